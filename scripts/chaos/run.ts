import { setMaxListeners } from 'node:events'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { writeSpin, writeTabular } from '../models/catalog.js'
import { runRequest, type Balancer, type Endpoint, type LogicalRequest } from './client.js'
import { ChaosInstance } from './instance.js'
import { defaultOptions, type ChaosOptions } from './options.js'
import { startHaproxy, type Haproxy } from '../lib/haproxy.js'
import { freePort } from '../lib/process.js'
import { readJournal } from '../lib/journal-records.js'
import { startRedisDeployment, type RedisDeployment } from '../lib/redis-deployment.js'
import { summarize, type ChaosReport, type DrainEvent, type KillEvent, type RedisEvent } from './report.js'
import { pause, seededRandom } from './util.js'
import { BATCH_VARIANT, finishBatchLeg, submitBatchLeg, type BatchLegReport, type SubmittedBatch } from './batch-leg.js'
import { spinBody, spinVariants, workload } from './workload.js'

const READY_TIMEOUT_MS = 30_000
/** Longest wait for a spin request to be in flight on some instance before a SIGKILL. */
const KILL_AIM_MS = 1500
const POLL_WAIT_MS = 2000
const POST_TIMEOUT_MS = 15_000
const SCRAPE_EVERY_MS = 1000
/** After the settle phase the batch leg may take this much longer to finish. */
const BATCH_SETTLE_MS = 60_000

/** The instances of the run and the load balancer in front of them. */
class Fleet implements Balancer {
  readonly all: ChaosInstance[] = []
  readonly startFailures: string[] = []
  private started = 0

  /** `slots`: the ports instances get in launch order, when a load balancer was told them in advance. */
  constructor (private readonly env: Record<string, string>, private readonly cwd: string, private readonly options: ChaosOptions, private readonly random: () => number, private readonly slots: readonly number[] = []) {}

  /** Starts one more instance; resolves once it is ready (or has failed to start). */
  async launch (): Promise<ChaosInstance> {
    const name = slotName(this.started)
    const port = this.slots[this.started++]
    const instance = await ChaosInstance.start(name, this.env, this.cwd, this.options.logDir === undefined ? undefined : join(this.options.logDir, `${name}.log`), port)
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

  pick (avoid?: Endpoint): ChaosInstance | undefined {
    const now = Date.now()
    const routable = this.all.filter((i) => i.routable(now))
    const others = routable.filter((i) => i !== avoid)
    const choices = others.length > 0 ? others : routable
    return choices.length === 0 ? undefined : choices[Math.floor(this.random() * choices.length)]
  }

  async scrapeAll (): Promise<void> {
    await Promise.all(this.all.filter((i) => i.alive && i.phase !== 'starting').map((i) => i.scrape()))
  }
}

function slotName (index: number): string {
  return `chaos-${index + 1}`
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
  let redis: RedisDeployment | undefined
  let fleet: Fleet | undefined
  let haproxy: Haproxy | undefined
  const killEverything = (): void => {
    for (const instance of fleet?.all ?? []) instance.killNow()
    haproxy?.child.signal('SIGKILL')
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
    const activeRedis = redis = await startRedisDeployment(options.redis)
    const namespace = `chaos-${options.seed}`
    const env = {
      ...redis.env,
      JOURNAL_MIN_REPLICAS: String(options.minReplicas),
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
      LOG_LEVEL: 'info',
      BATCH_STORAGE_URL: `file://${join(scratch, 'batches')}`,
      BATCH_SHARD_LINES: '50',
      BATCH_COMMIT_INTERVAL_MS: '250'
    }
    const random = seededRandom(options.seed)
    // Behind HAProxy every instance the run will ever start has its server line from the
    // start: one per initial instance and one per replacement (an event each interval).
    const slots = options.balancer === 'haproxy'
      ? await Promise.all(Array.from({ length: options.instances + Math.ceil((options.minEvents > 0 ? 3 : 1) * options.durationS / options.intervalS) + 1 }, () => freePort()))
      : []
    const activeFleet = fleet = new Fleet(env, cwd, options, random, slots)
    progress(`${redis.description}; starting ${options.instances} gateways (seed ${options.seed}, JOURNAL_MIN_REPLICAS ${options.minReplicas})`)
    await Promise.all(Array.from({ length: options.instances }, () => activeFleet.launch()))
    if (activeFleet.ready().length < options.instances) throw new Error(`the fleet did not start:\n${activeFleet.startFailures.join('\n')}`)
    let balancer: Balancer = activeFleet
    if (options.balancer === 'haproxy') {
      const proxy = haproxy = await startHaproxy(scratch, slots.map((port, index) => ({ name: slotName(index), address: `127.0.0.1:${port}` })))
      const endpoint: Endpoint = { name: 'haproxy', url: proxy.url }
      balancer = { pick: () => endpoint }
      progress(`HAProxy on ${proxy.url} with ${slots.length} server slots (the shipped deploy/haproxy/haproxy.cfg)`)
    }
    const behindProxy = options.balancer === 'haproxy'

    const references = await referenceOutputs(activeFleet.ready(), options.seed, signal)
    progress(`reference outputs of ${references.size} spin inputs taken; load for ${options.durationS} s`)
    const next = workload(random, references, options.spinShare)
    let batch: SubmittedBatch | undefined
    if (options.batchLines > 0) {
      batch = await submitBatchLeg(activeFleet.ready()[0].url, options.batchLines, options.seed)
      progress(`batch ${batch.batchId} of ${options.batchLines} spin lines (${BATCH_VARIANT.key}) submitted; it runs behind the load, through the kills and drains`)
    }

    const loadStart = Date.now()
    let loadEnd = loadStart + options.durationS * 1000
    let settleEnd = loadEnd + options.settleS * 1000
    const latestLoadEnd = loadStart + 3 * options.durationS * 1000
    const eventsMissing = (): boolean => kills.length + drains.length < options.minEvents
    // Clients, the scraper and the batch leg read loadEnd and settleEnd as they go, so moving them on is enough.
    const keepLoadUntil = (at: number): void => {
      if (at <= loadEnd) return
      loadEnd = Math.min(at, latestLoadEnd)
      settleEnd = loadEnd + options.settleS * 1000
    }
    const at = (): string => `${((Date.now() - loadStart) / 1000).toFixed(1).padStart(5)} s`
    const requests: LogicalRequest[] = []
    const pending = new Set<LogicalRequest>()
    const kills: KillEvent[] = []
    const drains: DrainEvent[] = []
    const redisEvents: RedisEvent[] = []
    const refusals: number[] = []
    const background: Array<Promise<unknown>> = []
    let sequence = 0

    const client = async (): Promise<void> => {
      while (!signal.aborted && Date.now() < loadEnd) {
        const id = `chaos-${options.seed}-${++sequence}`
        const request: LogicalRequest = {
          id, item: next(id), async: random() < options.asyncShare, sentAt: Date.now(), fate: 'pending', firstTime: false, posts: 0, polls: 0, handedOff: false, acceptedPending: false, forgotten: false
        }
        requests.push(request)
        pending.add(request)
        await runRequest(request, balancer, { deadline: () => settleEnd, pollWaitMs: POLL_WAIT_MS, postTimeoutMs: POST_TIMEOUT_MS, signal, onRefused: (at) => refusals.push(at) })
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
        if (eventsMissing()) keepLoadUntil(nextAt + 3000)
        await pause(nextAt - Date.now(), signal)
        // Each event needs a full fleet, so some instance always survives it.
        while (activeFleet.ready().length < options.instances && !signal.aborted && Date.now() < loadEnd - 1000) {
          if (eventsMissing()) keepLoadUntil(Date.now() + 3000)
          await pause(50, signal)
        }
        if (signal.aborted || Date.now() > loadEnd - 1000 || activeFleet.ready().length < options.instances) break
        if (kind === 'kill') {
          const victim = behindProxy ? await aimKillByMetrics(activeFleet, random, signal) : await aimKill(activeFleet, pending, random, signal)
          if (victim === undefined) break
          const affected = behindProxy ? [...pending] : [...pending].filter((r) => r.open === victim || r.lastPost === victim)
          victim.kill()
          kills.push({ instance: victim.name, at: victim.signalledAt as number, loadOffsetMs: (victim.signalledAt as number) - loadStart, affected, attributed: !behindProxy })
          progress(behindProxy
            ? `[${at()}] SIGKILL ${victim.name} (${victim.counters.get('spotgate_inflight_requests{model="spin"}') ?? 0} spin requests in flight on it)`
            : `[${at()}] SIGKILL ${victim.name} with ${affected.length} requests in flight on it (${affected.filter((r) => r.item.model === 'spin').length} spin)`)
          replace(victim)
        } else {
          const candidates = activeFleet.ready()
          const victim = candidates[Math.floor(random() * candidates.length)]
          if (behindProxy) await victim.scrape()
          const inflight = behindProxy ? inflightOf(victim) : [...pending].filter((r) => r.open === victim).length
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

    // One Redis primary SIGKILLed under load; started again later, it rejoins as a replica.
    const redisChaos = async (): Promise<void> => {
      if (options.redisKillAtS === undefined) return
      await pause(loadStart + options.redisKillAtS * 1000 - Date.now(), signal)
      if (signal.aborted) return
      const victim = await activeRedis.killPrimary(options.redisLinkLossMs)
      const event: RedisEvent = { server: `127.0.0.1:${victim.port}`, at: Date.now(), loadOffsetMs: Date.now() - loadStart }
      redisEvents.push(event)
      progress(`[${at()}] SIGKILL Redis primary ${event.server}${options.redisLinkLossMs > 0 ? ` (its replica links cut ${options.redisLinkLossMs} ms before)` : ''}`)
      await pause(options.redisRestartAfterS * 1000, signal)
      if (signal.aborted) return
      await activeRedis.restart(victim)
      event.restartedAt = Date.now()
      progress(`[${at()}] ${event.server} started again`)
      await activeRedis.waitHealthy(30_000).then(
        () => { event.healthyAt = Date.now(); progress(`[${at()}] Redis healthy again: ${event.server} is a synced replica`) },
        (error: Error) => { event.healthError = error.message; progress(`[${at()}] Redis not healthy again: ${error.message}`) }
      )
    }

    const scraper = async (): Promise<void> => {
      while (!signal.aborted && (Date.now() < loadEnd || pending.size > 0) && Date.now() < settleEnd) {
        await activeFleet.scrapeAll()
        await pause(SCRAPE_EVERY_MS, signal)
      }
    }

    // Watched from its submission, so the report says when it finished, not when the load did.
    const batchLeg = batch === undefined
      ? undefined
      : finishBatchLeg(batch, () => activeFleet.ready().map((i) => i.url), () => settleEnd + BATCH_SETTLE_MS, signal).then((report) => {
        progress(`[${at()}] batch ${report.status}${report.finishedMs === undefined ? '' : ` ${(report.finishedMs / 1000).toFixed(1)} s after it was submitted`}: ${report.lost} lines lost, ${report.duplicated} duplicated, ${report.wrong} wrong`)
        return report
      })
    const clients = Array.from({ length: options.concurrency }, () => client())
    const events = chaos()
    const redisEventsDone = redisChaos()
    const scraping = scraper()
    await Promise.all(clients)
    const settledAt = Date.now()
    progress(`[${at()}] load stopped at ${((loadEnd - loadStart) / 1000).toFixed(1)} s; every request settled ${((settledAt - loadEnd) / 1000).toFixed(1)} s later`)
    await events
    await redisEventsDone
    await Promise.all(background)
    await scraping
    const batchReport: BatchLegReport | undefined = await batchLeg
    await activeFleet.scrapeAll()

    const reader = redis.client()
    const journal = await readJournal(reader, namespace, requests.map((r) => r.id), redis.partitions).finally(() => reader.disconnect())
    for (const request of requests) request.replayAttempts = journal.records.get(request.id)?.attempts ?? 0
    return summarize({ options, batch: batchReport, requests, kills, drains, redisEvents, refusals, fleet: activeFleet.all, startFailures: activeFleet.startFailures, journal, loadStart, loadEnd, settledAt, wallStart, interrupted: signal.aborted })
  } finally {
    stop.abort()
    process.removeListener('exit', killEverything)
    await haproxy?.child.stop('SIGKILL')
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

function inflightOf (instance: ChaosInstance, model?: string): number {
  let sum = 0
  for (const [name, value] of instance.counters) {
    if (name.startsWith('spotgate_inflight_requests{') && (model === undefined || name.includes(`model="${model}"`))) sum += value
  }
  return sum
}

/**
 * Behind a load balancer the client does not know where its requests run: the
 * instances' own in-flight gauges tell which one is inside a spin run.
 */
async function aimKillByMetrics (fleet: Fleet, random: () => number, signal: AbortSignal): Promise<ChaosInstance | undefined> {
  const deadline = Date.now() + KILL_AIM_MS
  for (;;) {
    const candidates = fleet.ready()
    if (candidates.length === 0) return undefined
    await Promise.all(candidates.map((i) => i.scrape()))
    const busy = candidates.filter((i) => inflightOf(i, 'spin') > 0)
    if (busy.length > 0) return busy[Math.floor(random() * busy.length)]
    if (Date.now() > deadline || signal.aborted) return candidates.sort((a, b) => inflightOf(b) - inflightOf(a))[0]
    await pause(50, signal)
  }
}

/** The spin model's output for each input of the workload, from one run each, spread over the fleet. */
export async function referenceOutputs (instances: ReadonlyArray<Pick<ChaosInstance, 'name' | 'url'>>, seed: number, signal: AbortSignal): Promise<Map<string, number[]>> {
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
