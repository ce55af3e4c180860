import { randomBytes } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { FakeImds } from './fake-imds.js'
import { GATEWAY_ENTRY } from './paths.js'
import { allServersUp, startHaproxy, type Haproxy } from './haproxy.js'
import { Child, answers200, findBinary, freePort, parseSamples, waitUntil } from './process.js'

/**
 * The Docker Compose topology as processes on 127.0.0.1: redis-server (AOF on),
 * N gateways (`node dist/src/main.js`) sharing its journal, each watching its own
 * fake EC2 metadata endpoint for spot notices, and HAProxy in front with the shipped
 * configuration, for `npm run fleet`. (The fleet tests start their gateways with
 * test/helpers/fleet.ts and put HAProxy in front with ./haproxy.ts, as this does.)
 */

export { GATEWAY_ENTRY }

/** The binaries a fleet needs, with the Debian package that has each. */
export const REQUIRED_BINARIES = [
  { binary: 'redis-server', apt: 'redis-server' },
  { binary: 'haproxy', apt: 'haproxy' }
] as const

/** Debian packages to install for the binaries that are missing. */
export function missingPackages (): string[] {
  return REQUIRED_BINARIES.filter((b) => findBinary(b.binary) === undefined).map((b) => b.apt)
}

/** Set by the fleet for each gateway; not taken from the caller's environment. */
const TOPOLOGY_VARIABLES = ['HOST', 'PORT', 'INSTANCE_ID', 'REDIS_URL', 'PREEMPTION_SOURCES', 'AWS_METADATA_URL', 'ADMIN_TOKEN', 'MODEL_REPOSITORY', 'NODE_TEST_CONTEXT']

/** Defaults for one machine running several gateways; the caller's environment overrides them. */
const FLEET_DEFAULTS: Record<string, string> = {
  EXECUTION_PROVIDERS: 'cpu',
  MODEL_INSTANCES: '1',
  LOG_LEVEL: 'info'
}

export interface FleetOptions {
  readonly instances: number
  /** Logs, Redis data and the HAProxy configuration go here. */
  readonly dir: string
  readonly modelRepository: string
  /** Over FLEET_DEFAULTS and the inherited environment. */
  readonly gatewayEnv?: Record<string, string>
  /** HAProxy frontend port; default a free one. */
  readonly port?: number
  readonly readyTimeoutMs?: number
}

export interface FleetGateway {
  readonly name: string
  readonly url: string
  readonly child: Child
  readonly logFile: string
}

export interface Fleet {
  readonly redisUrl: string
  readonly redis: Child
  readonly imds: FakeImds
  readonly gateways: readonly FleetGateway[]
  readonly haproxy: Haproxy
  readonly adminToken: string
  /** Stops HAProxy, the gateways (SIGTERM: they drain), the metadata service and Redis. */
  stop: () => Promise<void>
}

export async function startFleet (options: FleetOptions): Promise<Fleet> {
  await mkdir(options.dir, { recursive: true })
  let redis: Child | undefined
  let imds: FakeImds | undefined
  let haproxy: Haproxy | undefined
  const gateways: FleetGateway[] = []
  // HAProxy first, so no client is sent to a gateway that is going away; the gateways
  // together (each drains for DRAIN_GRACE_MS); Redis last, after the hand-offs.
  const stop = async (): Promise<void> => {
    await haproxy?.stop()
    await Promise.all(gateways.map((g) => g.child.stop('SIGTERM', 45_000)))
    await imds?.close()
    await redis?.stop('SIGTERM', 3000)
  }
  try {
    const redisPort = await freePort()
    redis = new Child('redis-server', findBinary('redis-server') ?? 'redis-server', [
      '--port', String(redisPort), '--bind', '127.0.0.1', '--dir', options.dir, '--save', '',
      '--appendonly', 'yes', '--appendfsync', 'everysec'
    ], { logFile: join(options.dir, 'redis.log') })
    if (!await waitUntil(() => redisAnswers(redisPort), 10_000)) throw new Error(`redis-server did not start (see ${join(options.dir, 'redis.log')})`)
    const redisUrl = `redis://127.0.0.1:${redisPort}`

    imds = await new FakeImds().start()
    const adminToken = randomBytes(12).toString('hex')
    const inherited: Record<string, string> = {}
    for (const [key, value] of Object.entries(process.env)) {
      if (value !== undefined && !TOPOLOGY_VARIABLES.includes(key)) inherited[key] = value
    }
    for (let i = 1; i <= options.instances; i++) {
      const name = `gateway-${i}`
      const port = await freePort()
      const logFile = join(options.dir, `${name}.log`)
      const env = {
        ...FLEET_DEFAULTS,
        ...inherited,
        ...options.gatewayEnv,
        HOST: '127.0.0.1',
        PORT: String(port),
        INSTANCE_ID: name,
        REDIS_URL: redisUrl,
        MODEL_REPOSITORY: options.modelRepository,
        PREEMPTION_SOURCES: 'aws',
        AWS_METADATA_URL: imds.urlFor(name),
        ADMIN_TOKEN: adminToken
      }
      // The run directory as working directory: no stray .env is read.
      const child = new Child(name, process.execPath, [GATEWAY_ENTRY], { env, cwd: options.dir, logFile })
      gateways.push({ name, url: `http://127.0.0.1:${port}`, child, logFile })
    }
    for (const gateway of gateways) {
      const ready = await waitUntil(async () => {
        if (!gateway.child.running) throw new Error('exited')
        return await answers200(`${gateway.url}/health/ready`)
      }, options.readyTimeoutMs ?? 60_000, 100)
      if (!ready) throw new Error(`${gateway.name} did not become ready (exit ${JSON.stringify(gateway.child.exitStatus)}; see ${gateway.logFile})`)
    }

    const lb = haproxy = await startHaproxy(options.dir, gateways.map((g) => ({ name: g.name, address: g.url.replace('http://', '') })), { port: options.port })
    // Every server UP (rise 2) before traffic is sent.
    const allUp = await waitUntil(async () => {
      const rows = await lb.stats()
      return allServersUp(rows, gateways.map((g) => g.name))
    }, 10_000, 100)
    if (!allUp) throw new Error(`HAProxy did not mark every gateway UP (see ${join(options.dir, 'haproxy.log')})`)

    return { redisUrl, redis, imds, gateways, haproxy: lb, adminToken, stop }
  } catch (error) {
    await stop()
    throw error
  }
}

async function redisAnswers (port: number): Promise<boolean> {
  const client = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null })
  client.on('error', () => {})
  try {
    await client.connect()
    return await client.ping() === 'PONG'
  } catch {
    return false
  } finally {
    client.disconnect()
  }
}

/** The spotgate_* samples of one gateway's /metrics, or undefined when it does not answer. */
export async function scrape (url: string): Promise<Map<string, number> | undefined> {
  try {
    const response = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(2000) })
    const text = await response.text()
    return response.status === 200 ? parseSamples(text) : undefined
  } catch {
    return undefined
  }
}
