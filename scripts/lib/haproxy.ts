import { readFile, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { repoPath } from './paths.js'
import { Child, answers200, findBinary, freePort, waitUntil } from './process.js'

/** deploy/haproxy/haproxy.cfg, the configuration Docker Compose runs. */
export const SHIPPED_CONFIG = repoPath('deploy', 'haproxy', 'haproxy.cfg')

export interface HaproxyServer {
  readonly name: string
  /** `host:port`. */
  readonly address: string
}

export interface RenderOptions {
  /** Address of the `spotgate` frontend, e.g. `127.0.0.1:8080`. */
  readonly bind: string
  /** Address of the `stats` frontend (stats page and Prometheus metrics). */
  readonly statsBind: string
  readonly statsSocket: string
  readonly servers: readonly HaproxyServer[]
}

/**
 * The shipped configuration with loopback addresses: the frontends' `bind` lines, the
 * admin socket and the `gateways` servers are replaced, and Docker's DNS resolver is
 * dropped (the servers are IP addresses). Everything else (checks, retries, timeouts)
 * is kept as it is, so a fleet on one machine behaves as the Compose one does.
 */
export function renderConfig (template: string, options: RenderOptions): string {
  const out: string[] = []
  let section = ''
  for (const line of template.split('\n')) {
    const header = /^(\S+)\s*(\S*)/.exec(line)
    if (header !== null && !line.startsWith('#')) section = `${header[1]} ${header[2]}`.trim()
    const trimmed = line.trim()
    if (section.startsWith('resolvers ')) continue
    if (section === 'global' && trimmed.startsWith('stats socket ')) {
      out.push(line.replace(/stats socket \S+/, `stats socket ${options.statsSocket}`))
    } else if (section === 'frontend spotgate' && trimmed.startsWith('bind ')) {
      out.push(line.replace(/bind \S+/, `bind ${options.bind}`))
    } else if (section === 'frontend stats' && trimmed.startsWith('bind ')) {
      out.push(line.replace(/bind \S+/, `bind ${options.statsBind}`))
    } else if (section === 'backend gateways' && trimmed.startsWith('server ')) {
      continue
    } else if (section === 'backend gateways' && trimmed.startsWith('default-server ')) {
      out.push(line.replace(/ resolvers \S+/, ''))
      for (const server of options.servers) out.push(`    server ${server.name} ${server.address}`)
    } else {
      out.push(line)
    }
  }
  return out.join('\n')
}

/** One row of `show stat`: pxname, svname, status, wretr, wredis, hrsp_5xx... (all strings). */
export type StatRow = Record<string, string>

/** Sends one command to the admin socket and returns the whole answer. */
export function adminCommand (socketPath: string, command: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath)
    const chunks: Buffer[] = []
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no answer to "${command}" within ${timeoutMs} ms`)))
    socket.on('connect', () => socket.end(`${command}\n`))
    socket.on('data', (chunk) => chunks.push(chunk))
    socket.on('error', reject)
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')))
  })
}

/** `show stat` parsed: one row per frontend, server and backend. */
export async function showStat (socketPath: string): Promise<StatRow[]> {
  const lines = (await adminCommand(socketPath, 'show stat')).split('\n').filter((l) => l.trim() !== '')
  const header = lines.shift()
  if (header?.startsWith('# ') !== true) throw new Error(`unexpected "show stat" answer: ${header ?? ''}`)
  const columns = header.slice(2).split(',')
  return lines.map((line) => {
    const values = line.split(',')
    return Object.fromEntries(columns.map((column, i) => [column, values[i] ?? '']))
  })
}

export interface Haproxy {
  readonly child: Child
  /** http://127.0.0.1:<port> of the spotgate frontend. */
  readonly url: string
  /** http://127.0.0.1:<port>/stats of the stats frontend. */
  readonly statsUrl: string
  readonly socket: string
  readonly configFile: string
  stats: () => Promise<StatRow[]>
  /** The `gateways` rows of one server, or of the backend (`BACKEND`). */
  row: (server: string) => Promise<StatRow | undefined>
  stop: () => Promise<void>
}

/**
 * HAProxy in the foreground (`-db`) with the shipped configuration on loopback ports,
 * its log in `dir`. Resolves once the frontend and stats socket answer.
 */
export async function startHaproxy (dir: string, servers: readonly HaproxyServer[], options: { port?: number, statsPort?: number } = {}): Promise<Haproxy> {
  const binary = findBinary('haproxy')
  if (binary === undefined) throw new Error('haproxy is not installed (apt-get install -y haproxy)')
  const port = options.port ?? await freePort()
  const statsPort = options.statsPort ?? await freePort()
  const socket = join(dir, 'haproxy.sock')
  const configFile = join(dir, 'haproxy.cfg')
  const template = await readFile(SHIPPED_CONFIG, 'utf8')
  await writeFile(configFile, renderConfig(template, { bind: `127.0.0.1:${port}`, statsBind: `127.0.0.1:${statsPort}`, statsSocket: socket, servers }))
  const child = new Child('haproxy', binary, ['-db', '-f', configFile], { logFile: join(dir, 'haproxy.log') })
  const statsUrl = `http://127.0.0.1:${statsPort}/stats`
  const up = await waitUntil(async () => {
    if (!child.running) throw new Error('exited')
    return await answers200(statsUrl) && (await showStat(socket)).length > 0
  }, 10_000)
  if (!up) {
    await child.stop('SIGKILL')
    const log = await readFile(join(dir, 'haproxy.log'), 'utf8').catch(() => '')
    throw new Error(`haproxy did not start (exit ${JSON.stringify(child.exitStatus)}):\n${log.slice(-2000)}`)
  }
  const stats = (): Promise<StatRow[]> => showStat(socket)
  return {
    child,
    url: `http://127.0.0.1:${port}`,
    statsUrl,
    socket,
    configFile,
    stats,
    row: async (server) => (await stats()).find((r) => r.pxname === 'gateways' && r.svname === server),
    // SIGUSR1 is HAProxy's soft stop: it finishes the requests in flight, then exits.
    stop: async () => { await child.stop('SIGUSR1', 3000) }
  }
}

/**
 * Whether each named server of the `gateways` backend is UP on a passed health check.
 * A server is shown UP from HAProxy's start, before its first check has run, so the
 * check's own result is looked at too.
 */
export function allServersUp (rows: readonly StatRow[], names: readonly string[]): boolean {
  return names.every((name) => {
    const row = rows.find((r) => r.pxname === 'gateways' && r.svname === name)
    return row?.status === 'UP' && row.check_status === 'L7OK'
  })
}
