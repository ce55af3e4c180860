import { setMaxListeners } from 'node:events'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { writeSpin, writeTabular } from '../models/catalog.js'
import { runRequest, type Balancer, type LogicalRequest } from './client.js'
import { ChaosInstance } from './instance.js'
import { defaultOptions, type ChaosOptions } from './options.js'
import { RedisServer } from '../lib/redis-server.js'
import { summarize, type ChaosReport, type DrainEvent, type KillEvent } from './report.js'
import { pause, seededRandom } from './util.js'
import { spinBody, spinVariants, workload } from './workload.js'

const READY_TIMEOUT_MS = 30_000
/** Longest wait for a spin request to be in flight on some instance before a SIGKILL. */
const KILL_AIM_MS = 1500
const POLL_WAIT_MS = 2000
const POST_TIMEOUT_MS = 15_000
const SCRAPE_EVERY_MS = 1000

/** The instances of the run and the load balancer in front of them. */
class Fleet implements Balancer {
  readonly all: ChaosInstance[] = []
  readonly startFailures: string[] = []
  private started = 0

  constructor (private readonly env: Record<string, string>, private readonly cwd: string, private readonly options: ChaosOptions, private readonly random: () => number) {}

  /** Starts one more instance; resolves once it is ready (or has failed to start). */
  async launch (): Promise<ChaosInstance> {
    const name = `chaos-${++this.started}`
    const instance = await ChaosInstance.start(name, this.env, this.cwd, this.options.logDir === undefined ? undefined : join(this.options.logDir, `${name}.log`))
    this.all.push(instance)
    if (!(await instance.waitReady(READY_TIMEOUT_MS, this.options.signal)) && this.options.signal?.aborted !== true) {
      const exit = instance.exitStatus
      this.startFailures.push(`${name} ${exit === undefined ? `was not ready within ${READY_TIMEOUT_MS} ms` : `exited (${exit.code ?? exit.signal}) before it was ready`}:\n${instance.tail(10)}`)
      instance.kill()
    }
    return instance
  }

  ready (): ChaosInstance[] {
    return this.all.filter((i) => i.alive && i.phase === 'ready')
  }

  pick (avoid?: ChaosInstance): ChaosInstance | undefined {
    const now = Date.now()
    const routable = this.all.filter((i) => i.routable(now))
    const others = routable.filter((i) => i !== avoid)
    const choices = others.length > 0 ? others : routable
    return choices.length === 0 ? undefined : choices[Math.floor(this.random() * choices.length)]
  }

  /** Waits until `count` instances are ready; false on timeout. */
  async waitFor (count: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const deadline = Date.now() + timeoutMs
    while (this.ready().length < count) {
      if (Date.now() > deadline || signal?.aborted === true) return false
      await pause(50, signal)
    }
    return true
  }

  async scrapeAll (): Promise<void> {
    await Promise.all(this.all.filter((i) => i.alive && i.phase !== 'starting').map((i) => i.scrape()))
  }
}

/**
 * One chaos run: its own redis-server and gateways, a bounded load of logical requests
 * with idempotency keys, SIGKILLs and SIGTERMs of instances under that load (each
 * replaced by a new one), then a bounded settle phase. Everything started is stopped
 * before it returns or throws.
 */
export async function runChaos (partial: Partial<ChaosOptions> = {}): Promise<ChaosReport> {
  const options = defaultOptions(partial)
  const progress = options.progress ?? (() => {})
  const stop = new AbortController()
  const signal = options.signal === undefined ? stop.signal : AbortSignal.any([options.signal, stop.signal])
  // Every open exchange of every client listens to it.
  setMaxListeners(0, signal)
  if (options.signal !== undefined) setMaxListeners(0, options.signal)
  const scratch = await mkdtemp(join(tmpdir(), 'spotgate-chaos-'))
  let redis: RedisServer | undefined
  let fleet: Fleet | undefined
  const killEverything = (): void => {
    for (const instance of fleet?.all ?? []) instance.killNow()
    redis?.killNow()
  }
  process.once('exit', killEverything)
  const wallStart = Date.now()
  try {
    const repo = join(scratch, 'models')
    await writeSpin(repo)
    await writeTabular(repo)
    const cwd = join(scratch, 'cwd')
    await mkdir(cwd)
    if (options.logDir !== undefined) await mkdir(options.logDir, { recursive: true })
    redis = await RedisServer.start(['--appendfsync', 'everysec'])
    const namespace = `chaos-${options.seed}`
    const env = {
      REDIS_URL: redis.url,
      JOURNAL_NAMESPACE: namespace,
      MODEL_REPOSITORY: repo,
      EXECUTION_PROVIDERS: 'cpu',
      PREEMPTION_SOURCES: 'none',
      MODEL_INSTANCES: '1',
      LEASE_TTL_MS: String(options.leaseTtlMs),
      DRAIN_GRACE_MS: String(options.drainGraceMs),
      DRAIN_TIMEOUT_MS: String(options.drainTimeoutMs),
      DRAIN_SAFETY_MARGIN_MS: '0',
      IDEMPOTENCY_WAIT_MS: String(POLL_WAIT_MS),
      MAX_POLL_WAIT_MS: String(POLL_WAIT_MS * 2),
      LOG_LEVEL: 'info'
    }
    const random = seededRandom(options.seed)
    const activeFleet = fleet = new Fleet(env, cwd, options, random)
    progress(`redis-server on 127.0.0.1:${redis.port}; starting ${options.instances} gateways (seed ${options.seed})`)
    await Promise.all(Array.from({ length: options.instances }, () => activeFleet.launch()))
    if (activeFleet.ready().length < options.instances) throw new Error(`the fleet did not start:\n${activeFleet.startFailures.join('\n')}`)

    const references = await referenceOutputs(activeFleet.ready(), options.seed, signal)
    progress(`reference outputs of ${references.size} spin inputs taken; load for ${options.durationS} s`)
    const next = workload(random, references, options.spinShare)

    const loadStart = Date.now()
    const loadEnd = loadStart + options.durationS * 1000
    const settleEnd = loadEnd + options.settleS * 1000
    const at = (): string => `${((Date.now() - loadStart) / 1000).toFixed(1).padStart(5)} s`
    const requests: LogicalRequest[] = []
    const pending = new Set<LogicalRequest>()
    const kills: KillEvent[] = []
    const drains: DrainEvent[] = []
    const background: Array<Promise<unknown>> = []
    let sequence = 0

    const client = async (): Promise<void> => {
      while (!signal.aborted && Date.now() < loadEnd) {
        const id = `chaos-${options.seed}-${++sequence}`
        const request: LogicalRequest = {
          id, item: next(id), sentAt: Date.now(), fate: 'pending', firstTime: false, posts: 0, polls: 0, handedOff: false, acceptedPending: false, forgotten: false
        }
        requests.push(request)
        pending.add(request)
        await runRequest(request, activeFleet, { deadline: () => settleEnd, pollWaitMs: POLL_WAIT_MS, postTimeoutMs: POST_TIMEOUT_MS, signal })
        pending.delete(request)
      }
    }

    const replace = (victim: ChaosInstance): void => {
      background.push(activeFleet.launch().then((fresh) => progress(`[${at()}] ${fresh.name} ${fresh.phase === 'ready' ? `ready (replacing ${victim.name})` : 'failed to start'}`)))
    }

    const chaos = async (): Promise<void> => {
      let nextAt = loadStart + options.firstEventS * 1000
      let kind: 'kill' | 'drain' = 'kill'
      while (!signal.aborted) {
        await pause(nextAt - Date.now(), signal)
        // Each event needs a full fleet, so some instance always survives it.
        if (!(await activeFleet.waitFor(options.instances, Math.max(0, loadEnd - 1000 - Date.now()), signal))) break
        if (signal.aborted || Date.now() > loadEnd - 1000) break
        if (kind === 'kill') {
          const victim = await aimKill(activeFleet, pending, random, signal)
          if (victim === undefined) break
          const affected = [...pending].filter((r) => r.open === victim || r.lastPost === victim)
          victim.kill()
          kills.push({ instance: victim.name, at: victim.signalledAt as number, loadOffsetMs: (victim.signalledAt as number) - loadStart, affected })
          progress(`[${at()}] SIGKILL ${victim.name} with ${affected.length} requests in flight on it (${affected.filter((r) => r.item.model === 'spin').length} spin)`)
          replace(victim)
        } else {
          const candidates = activeFleet.ready()
          const victim = candidates[Math.floor(random() * candidates.length)]
          const inflight = [...pending].filter((r) => r.open === victim).length
          victim.terminate(options.balancerLagMs)
          const drain: DrainEvent = { instance: victim.name, at: victim.signalledAt as number, loadOffsetMs: (victim.signalledAt as number) - loadStart, inflight }
          drains.push(drain)
          progress(`[${at()}] SIGTERM ${victim.name} with ${inflight} requests in flight on it`)
          background.push(victim.waitExit(options.drainGraceMs + options.drainTimeoutMs + 10_000).then(({ exit, forced }) => {
            drain.exit = { code: exit.code, signal: exit.signal, forced, afterMs: exit.at - drain.at }
            progress(`[${at()}] ${victim.name} exited ${forced ? 'only when SIGKILLed after the drain overran' : `with code ${exit.code ?? exit.signal}`} ${exit.at - drain.at} ms after SIGTERM`)
          }))
          replace(victim)
        }
        kind = kind === 'kill' ? 'drain' : 'kill'
        nextAt += options.intervalS * 1000
      }
    }

    const scraper = async (): Promise<void> => {
      while (!signal.aborted && (Date.now() < loadEnd || pending.size > 0) && Date.now() < settleEnd) {
        await activeFleet.scrapeAll()
        await pause(SCRAPE_EVERY_MS, signal)
      }
    }

    const clients = Array.from({ length: options.concurrency }, () => client())
    const events = chaos()
    const scraping = scraper()
    await Promise.all(clients)
    const settledAt = Date.now()
    progress(`[${at()}] load stopped at ${options.durationS} s; every request settled ${((settledAt - loadEnd) / 1000).toFixed(1)} s later`)
    await events
    await Promise.all(background)
    await scraping
    await activeFleet.scrapeAll()

    const journal = await readJournal(redis, namespace, requests)
    return summarize({ options, requests, kills, drains, fleet: activeFleet.all, startFailures: activeFleet.startFailures, journal, loadStart, loadEnd, settledAt, wallStart, interrupted: signal.aborted })
  } finally {
    stop.abort()
    process.removeListener('exit', killEverything)
    await Promise.all((fleet?.all ?? []).map(async (instance) => { instance.killNow(); await instance.exited }))
    await redis?.stop()
    await rm(scratch, { recursive: true, force: true })
  }
}

/**
 * The instance to SIGKILL: a random one of those with a spin request open on it (so it
 * dies mid-inference), waiting briefly for one; failing that, the one with most open requests.
 */
async function aimKill (fleet: Fleet, pending: ReadonlySet<LogicalRequest>, random: () => number, signal: AbortSignal): Promise<ChaosInstance | undefined> {
  const deadline = Date.now() + KILL_AIM_MS
  for (;;) {
    const candidates = fleet.ready()
    if (candidates.length === 0) return undefined
    const open = (instance: ChaosInstance, model?: string): number =>
      [...pending].filter((r) => r.open === instance && (model === undefined || r.item.model === model)).length
    const busy = candidates.filter((i) => open(i, 'spin') > 0)
    if (busy.length > 0) return busy[Math.floor(random() * busy.length)]
    if (Date.now() > deadline || signal.aborted) return candidates.sort((a, b) => open(b) - open(a))[0]
    await pause(20, signal)
  }
}

/** The spin model's output for each input of the workload, from one run each, spread over the fleet. */
async function referenceOutputs (instances: readonly ChaosInstance[], seed: number, signal: AbortSignal): Promise<Map<string, number[]>> {
  const outputs = await Promise.all(spinVariants().map(async (variant, index) => {
    const instance = instances[index % instances.length]
    const id = `chaos-${seed}-reference-${index}`
    const response = await fetch(`${instance.url}/v2/models/spin/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': id },
      body: JSON.stringify(spinBody(variant, id)),
      signal: AbortSignal.any([signal, AbortSignal.timeout(POST_TIMEOUT_MS)])
    })
    const text = await response.text()
    if (response.status !== 200) throw new Error(`reference run of spin ${variant.key} on ${instance.name} answered ${response.status}: ${text}`)
    return [variant.key, (JSON.parse(text) as { outputs: Array<{ data: number[] }> }).outputs[0].data] as const
  }))
  return new Map(outputs)
}

export interface JournalRecord {
  readonly state: string | null
  readonly attempts: number
}

/** Each request's journal record (state, replay claims) and what is left in the replay stream. */
async function readJournal (redis: RedisServer, namespace: string, requests: readonly LogicalRequest[]) {
  const client = redis.client()
  const prefix = `spotgate:{${namespace}}`
  try {
    const records = new Map<string, JournalRecord>()
    for (let from = 0; from < requests.length; from += 500) {
      const chunk = requests.slice(from, from + 500)
      const pipeline = client.pipeline()
      for (const request of chunk) pipeline.hmget(`${prefix}:req:${request.id}`, 'state', 'attempts')
      const replies = await pipeline.exec() ?? []
      chunk.forEach((request, index) => {
        const [state, attempts] = (replies[index]?.[1] ?? [null, null]) as [string | null, string | null]
        records.set(request.id, { state, attempts: Number(attempts ?? 0) })
        request.replayAttempts = Number(attempts ?? 0)
      })
    }
    const replayBacklog = await client.xlen(`${prefix}:replay`)
    return { records, replayBacklog }
  } finally {
    client.disconnect()
  }
}
