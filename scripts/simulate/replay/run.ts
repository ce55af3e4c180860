import { setMaxListeners } from 'node:events'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ChaosInstance } from '../../chaos/instance.js'
import { referenceOutputs } from '../../chaos/run.js'
import { pause, seededRandom } from '../../chaos/util.js'
import { checkAnswer, workload, type WorkItem } from '../../chaos/workload.js'
import { runLoad } from '../../lib/client.js'
import { FakeImds } from '../../lib/fake-imds.js'
import { missingPackages, scrape } from '../../lib/fleet.js'
import { readJournal } from '../../lib/journal-records.js'
import { RedisServer } from '../../lib/redis-server.js'
import { writeSpin, writeTabular } from '../../models/catalog.js'
import type { ReplayOptions } from '../options.js'
import { loadTrace } from '../traces/catalog.js'
import { summarize, formatReplay, passed, type InstanceRun, type ReplayReport } from './report.js'
import { planReplay, type PlayedInstance, type ReplayPlan } from './schedule.js'
import { GatewaySlots } from './slots.js'

// `npm run simulate -- --replay`: the trace compressed in time against real processes.
// redis-server, HAProxy with the shipped configuration, a fake EC2 metadata service;
// a gateway started when the trace adds an instance, an AWS spot notice (scaled with the
// speed-up) when it takes one back, and the machine taken away (SIGKILL, if it is still
// running) at the notice's time; clients send keyed requests through HAProxy all along
// and retry as real ones do. Every answer is checked.

const NAMESPACE = 'replay'
const SEED = 20_240_315
const READY_TIMEOUT_MS = 30_000
const REQUEST_DEADLINE_MS = 60_000
/** Share of requests for the slow spin model (50-400 ms runs), so drains have queued work. */
const SPIN_SHARE = 0.25
/** Slots beyond the instances alive at once: gateways still draining never block a new one. */
const SPARE_SLOTS = 2

export interface ReplayContext {
  readonly signal: AbortSignal
  readonly progress: (line: string) => void
}

export interface ReplayOutcome {
  readonly report: ReplayReport
  readonly text: string
  readonly passed: boolean
  readonly interrupted: boolean
}

/** Gateway settings for a notice `speed` times shorter than the cloud's. */
export function gatewayEnv (plan: ReplayPlan): Record<string, string> {
  const noticeMs = (plan.noticeS / plan.speed) * 1000
  return {
    JOURNAL_NAMESPACE: NAMESPACE,
    EXECUTION_PROVIDERS: 'cpu',
    MODEL_INSTANCES: '1',
    PREEMPTION_SOURCES: 'aws',
    NOTICE_POLL_INTERVAL_MS: '200',
    // Serve on while HAProxy's check takes the gateway out (about 1.5 s), within the notice.
    DRAIN_GRACE_MS: String(Math.min(1500, Math.floor(noticeMs / 2))),
    // spotgate's 5 s margin, scaled like the notice, but above the second a drain may take
    // past its deadline to exit (a model run it waits for): the machine goes at the notice's time.
    DRAIN_SAFETY_MARGIN_MS: String(Math.max(1500, Math.round(5000 / plan.speed))),
    DRAIN_TIMEOUT_MS: '10000',
    LEASE_TTL_MS: '2000',
    IDEMPOTENCY_WAIT_MS: '3000',
    MAX_POLL_WAIT_MS: '5000',
    LOG_LEVEL: 'info'
  }
}

export async function replay (options: ReplayOptions, context: ReplayContext): Promise<ReplayOutcome> {
  const trace = loadTrace(options.trace, { zone: options.zone })
  const plan = planReplay(trace, { speed: options.speed, maxInstances: options.maxInstances, hours: options.hours })
  const missing = missingPackages()
  if (missing.length > 0) throw new Error(`${missing.join(' and ')} not found; install with: apt-get install -y ${missing.join(' ')}`)

  const { progress } = context
  const stop = new AbortController()
  const signal = AbortSignal.any([context.signal, stop.signal])
  setMaxListeners(0, signal)
  const scratch = await mkdtemp(join(tmpdir(), 'spotgate-replay-'))
  const logDir = join(scratch, 'logs')
  const cwd = join(scratch, 'cwd')
  await mkdir(logDir, { recursive: true })
  await mkdir(cwd)
  let redis: RedisServer | undefined
  let imds: FakeImds | undefined
  let slots: GatewaySlots | undefined
  const runs: InstanceRun[] = []
  const killEverything = (): void => {
    for (const run of runs) run.instance?.killNow()
    redis?.killNow()
  }
  process.once('exit', killEverything)
  const wallStart = Date.now()
  let keepLogs = false
  try {
    const repo = join(scratch, 'models')
    await writeTabular(repo)
    await writeSpin(repo)
    redis = await RedisServer.start(['--appendfsync', 'everysec'])
    imds = await new FakeImds().start()
    slots = await GatewaySlots.start(scratch, plan.maxInstances + SPARE_SLOTS)
    const env = { ...gatewayEnv(plan), REDIS_URL: redis.url, MODEL_REPOSITORY: repo }
    const fakeImds = imds
    const activeSlots = slots
    progress(`${plan.trace.name}: ${(plan.spanS / 3600).toFixed(2)} h at ${plan.speed}× = ${(plan.spanS / plan.speed).toFixed(0)} s; playing ${plan.played.length} of ${plan.inTrace.instances} instances (at most ${plan.maxInstances} at once, the trace has up to ${plan.inTrace.peak}), ${plan.played.filter((p) => p.removeS !== undefined).length} of ${plan.inTrace.removals} removals; logs in ${logDir}`)

    const starts = new Map<PlayedInstance, Promise<InstanceRun>>()
    const start = (played: PlayedInstance, atS: number): Promise<InstanceRun> => {
      const started = launch(played, atS)
      starts.set(played, started)
      return started
    }
    const launch = async (played: PlayedInstance, atS: number): Promise<InstanceRun> => {
      const run: InstanceRun = { played, name: gatewayName(played), traceAtS: atS, launchedAt: Date.now() }
      runs.push(run)
      run.instance = await activeSlots.launch(run.name, { ...env, AWS_METADATA_URL: fakeImds.urlFor(run.name) }, cwd, logDir, signal)
      if (run.instance === undefined) {
        run.startFailure = 'no free HAProxy slot within 15 s'
        return run
      }
      const instance = run.instance
      run.launchedAt = instance.startedAt
      run.ready = instance.waitReady(READY_TIMEOUT_MS, signal).then((ready) => {
        if (ready) run.readyAt = instance.readyAt
        // A gateway noticed while it starts may drain before it is ever ready: that is the trace, not a failure.
        else if (!signal.aborted && run.notice === undefined) run.startFailure = `not ready within ${READY_TIMEOUT_MS} ms:\n${instance.tail(8)}`
      })
      return run
    }

    // The instances alive when the trace begins are running before the clock starts.
    const initial = await Promise.all(plan.played.filter((p) => p.addS === 0).map((p) => start(p, 0)))
    await Promise.all(initial.map((r) => r.ready))
    const failed = initial.find((r) => r.startFailure !== undefined)
    if (failed !== undefined) throw new Error(`${failed.name} did not start: ${failed.startFailure ?? ''}`)
    if (!await activeSlots.waitUp(initial.map((r) => r.instance as ChaosInstance), 15_000)) throw new Error('HAProxy did not mark the first gateways UP within 15 s')
    // Spin answers are checked against a run of each input on a first gateway; a trace that starts with none sends tabular requests only.
    const references = initial.length > 0 ? await referenceOutputs(initial.map((r) => r.instance as ChaosInstance), SEED, signal) : new Map<string, number[]>()
    const next = workload(seededRandom(SEED), references, initial.length > 0 ? SPIN_SHARE : 0)

    const t0 = Date.now()
    const wallOf = (traceS: number): number => t0 + (traceS / plan.speed) * 1000
    const stamp = (): string => `[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s, trace ${formatTraceTime((Date.now() - t0) / 1000 * plan.speed)}]`
    progress(`${stamp()} clock started: ${initial.length} gateways behind ${activeSlots.url}, ${options.clients} clients`)

    // The trace's events as timed actions, in order.
    const actions = plan.played.flatMap((p) => [
      ...(p.addS > 0 ? [{ atS: p.addS, rank: 0, kind: 'start' as const, played: p }] : []),
      ...(p.noticeAtS !== undefined ? [{ atS: p.noticeAtS, rank: 1, kind: 'notice' as const, played: p }] : [])
    ]).sort((a, b) => a.atS - b.atS || a.rank - b.rank)
    const background: Array<Promise<unknown>> = []

    const conductor = async (): Promise<void> => {
      for (const action of actions) {
        await pause(wallOf(action.atS) - Date.now(), signal)
        if (signal.aborted) return
        if (action.kind === 'start') {
          progress(`${stamp()} the trace adds ${action.played.id}: starting a gateway`)
          background.push(start(action.played, action.atS).then(async (run) => {
            await run.ready
            progress(`${stamp()} ${run.name} ${run.startFailure === undefined ? `ready after ${(((run.readyAt ?? 0) - run.launchedAt) / 1000).toFixed(1)} s` : `failed to start: ${run.startFailure}`}`)
          }))
          continue
        }
        background.push(preempt(action.played))
      }
    }

    /** The notice, then the machine taken away at the notice's time if it has not drained and exited by then. */
    const preempt = async (played: PlayedInstance): Promise<void> => {
      const name = gatewayName(played)
      const removeAt = wallOf(played.removeS as number)
      // IMDS writes whole seconds: round the deadline up so the notice is never shorter than the scaled one.
      const deadline = Math.ceil(removeAt / 1000) * 1000
      const notice = fakeImds.trigger(name, 'terminate', (deadline - Date.now() + 1) / 1000)
      const sent = { sentAt: Date.now(), deadline: Date.parse(notice.time) }
      progress(`${stamp()} AWS spot notice for ${name}: terminate at ${notice.time} (${((sent.deadline - sent.sentAt) / 1000).toFixed(1)} s)`)
      // A gateway the trace noticed at its start may still be starting: the notice waits in the metadata service for its first poll.
      const run = await (starts.get(played) as Promise<InstanceRun>)
      run.notice = sent
      const instance = run.instance
      if (instance === undefined) return
      const exited = await Promise.race([instance.exited, pause(Math.max(removeAt, sent.deadline) - Date.now(), signal).then(() => undefined)])
      if (exited === undefined && instance.alive) {
        instance.kill()
        run.killedAtRemoval = true
        progress(`${stamp()} ${run.name} still running at the notice's time: the machine is taken away (SIGKILL)`)
      } else if (exited !== undefined) {
        progress(`${stamp()} ${run.name} drained and exited ${exited.code ?? exited.signal} ${((exited.at - sent.sentAt) / 1000).toFixed(1)} s after its notice`)
      }
    }

    // Replay latencies are in each gateway's histogram; keep each one's last scrape.
    const scrapes = new Map<InstanceRun, Map<string, number>>()
    let loadDone = false
    const scraper = async (): Promise<void> => {
      while (!loadDone && !signal.aborted) {
        await Promise.all(runs.filter((r) => r.instance?.alive === true && r.readyAt !== undefined).map(async (r) => {
          const samples = await scrape((r.instance as ChaosInstance).url)
          if (samples !== undefined) scrapes.set(r, samples)
        }))
        await pause(500, signal)
      }
    }

    const items = new Map<string, WorkItem>()
    const keyPrefix = `replay-${Date.now().toString(36)}`
    const conducting = conductor()
    const scraping = scraper()
    const results = await runLoad({
      baseUrl: activeSlots.url,
      concurrency: options.clients,
      durationMs: (plan.spanS / plan.speed) * 1000,
      requestDeadlineMs: REQUEST_DEADLINE_MS,
      keyPrefix,
      stop: signal,
      body: (n) => {
        const key = `${keyPrefix}-${n}`
        const item = next(key)
        items.set(key, item)
        return { ...item.body, model: item.model }
      }
    })
    const traceEndAt = wallOf(plan.spanS)
    progress(`${stamp()} trace over; ${results.length} requests ended ${((Date.now() - traceEndAt) / 1000).toFixed(1)} s after its end`)
    await conducting
    await Promise.all(background)
    loadDone = true
    await scraping

    const journal = await readJournal(redis, NAMESPACE, results.map((r) => r.key))
    const wrong = results.filter((r) => r.ending === 'answered').flatMap((r) => {
      const item = items.get(r.key) as WorkItem
      const why = checkAnswer(item, r.key, JSON.stringify(r.answer))
      return why === undefined ? [] : [{ key: r.key, why }]
    })
    const report = summarize({ plan, options, runs, results, wrong, journal, scrapes: [...scrapes.values()], traceStartAt: t0, traceEndAt, wallStart, interrupted: context.signal.aborted })
    keepLogs = !passed(report) || options.keepLogs
    return { report, text: formatReplay(report, keepLogs ? logDir : undefined), passed: passed(report), interrupted: report.interrupted }
  } catch (error) {
    keepLogs = true
    throw Object.assign(error as Error, { logDir })
  } finally {
    stop.abort()
    process.removeListener('exit', killEverything)
    await slots?.haproxy.stop()
    await Promise.all(runs.map(async (run) => { run.instance?.killNow(); await run.instance?.exited }))
    await imds?.close()
    await redis?.stop()
    if (!keepLogs) await rm(scratch, { recursive: true, force: true })
  }
}

function gatewayName (played: PlayedInstance): string {
  return `gw-${played.id.replace(/[^A-Za-z0-9._:-]/g, '-')}`
}

function formatTraceTime (seconds: number): string {
  const h = Math.floor(seconds / 3600)
  const m = Math.floor((seconds % 3600) / 60)
  const s = Math.floor(seconds % 60)
  return `${h > 0 ? `${h}:` : ''}${String(m).padStart(h > 0 ? 2 : 1, '0')}:${String(s).padStart(2, '0')}`
}
