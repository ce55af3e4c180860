import type { LogicalRequest } from './client.js'
import type { ChaosInstance } from './instance.js'
import type { ChaosOptions } from './options.js'
import { percentile } from './util.js'
import { SPIN_MS } from './workload.js'
import { batchLegPassed, type BatchLegReport } from './batch-leg.js'

const SLOWEST_SPIN_MS = Math.max(...SPIN_MS)

export interface KillEvent {
  readonly instance: string
  readonly at: number
  readonly loadOffsetMs: number
  /**
   * Unanswered requests that were open on the instance, or last POSTed to it, at the kill.
   * Behind a load balancer the client cannot tell which instance held a request: then
   * these are every unanswered request, and those a peer replayed are counted (`attributed` false).
   */
  readonly affected: readonly LogicalRequest[]
  readonly attributed: boolean
}

export interface DrainEvent {
  readonly instance: string
  readonly at: number
  readonly loadOffsetMs: number
  readonly inflight: number
  exit?: { code: number | null, signal: string | null, forced: boolean, afterMs: number }
}

export interface RedisEvent {
  /** The primary SIGKILLed. */
  readonly server: string
  readonly at: number
  readonly loadOffsetMs: number
  restartedAt?: number
  /** When every shard had a primary and a synced replica again. */
  healthyAt?: number
  healthError?: string
}

interface JournalView {
  readonly records: ReadonlyMap<string, { state: string | null, attempts: number }>
  readonly replayBacklog: number
}

export interface SummaryInput {
  readonly options: ChaosOptions
  readonly requests: readonly LogicalRequest[]
  readonly kills: readonly KillEvent[]
  readonly drains: readonly DrainEvent[]
  readonly redisEvents: readonly RedisEvent[]
  /** When each 503 without a Location (a refusal) was received. */
  readonly refusals: readonly number[]
  readonly fleet: readonly ChaosInstance[]
  readonly startFailures: readonly string[]
  readonly journal: JournalView
  readonly loadStart: number
  readonly loadEnd: number
  readonly settledAt: number
  readonly wallStart: number
  readonly interrupted: boolean
  /** The batch leg's outcome, when the run had one. */
  readonly batch?: BatchLegReport
}

export interface Latency { readonly count: number, readonly p50Ms?: number, readonly p99Ms?: number, readonly maxMs?: number }

export interface ChaosReport {
  readonly settings: { durationS: number, instances: number, concurrency: number, seed: number, intervalS: number, settleS: number, leaseTtlMs: number, drainGraceMs: number, drainTimeoutMs: number, spinShare: number, asyncShare: number, balancer: string, redis: string, minReplicas: number }
  readonly interrupted: boolean
  readonly sent: number
  readonly byModel: Record<string, number>
  /** Sent with `Prefer: respond-async`. */
  readonly async: number
  /** 503s without a Location: the request was refused (not ready, journal unavailable) and sent again. */
  readonly refused: number
  /** Each Redis primary SIGKILLed: the refusals from the kill until Redis was healthy again, and when it was. */
  readonly redisEvents: Array<{ server: string, atS: number, refused: number, lastRefusalMs?: number, restartedMs?: number, healthyMs?: number, healthError?: string }>
  readonly answeredFirstTime: number
  readonly answeredAfterRetry: number
  /** Requests whose client saw 503 with a Location: a drain handed them to the fleet. */
  readonly handedOff: number
  /** Answered requests the journal shows a replaying instance claimed (attempts > 0): produced by a peer. */
  readonly replayed: number
  /** Never answered within the settle phase (or accepted and then unknown to the journal). */
  readonly lost: number
  /** Accepted (202 / 503 + Location) and later unknown (404): the journal dropped it. Included in `lost`. */
  readonly forgotten: number
  readonly wrong: number
  readonly latency: { firstTime: Latency, all: Latency }
  readonly kills: number
  readonly drains: number
  /** From each SIGKILL to the last answer of the requests that were in flight on the killed instance. */
  readonly killToLastAnswer: { readonly maxMs?: number, readonly meanMs?: number, readonly events: Array<{ instance: string, atS: number, inflight: number, takeoverMs?: number, firstAnswerMs?: number, lastAnswerMs?: number, unanswered: number }> }
  /** From each SIGKILL to a peer's takeover of the dead instance's work (its log): the lease's share of the delay. */
  readonly killToTakeover: { readonly maxMs?: number, readonly meanMs?: number }
  readonly drainEvents: Array<{ instance: string, atS: number, inflight: number, exitCode: number | null, exitSignal: string | null, forced: boolean, exitMs?: number }>
  readonly settleMs: number
  readonly wallS: number
  /** Counters summed over every instance of the run (last scrape of each). */
  readonly fleetCounters: Record<string, number>
  /** Events counted from every instance's log, killed and drained ones included. */
  readonly fleetLog: ChaosInstance['logged']
  readonly replayBacklogAtEnd: number
  /** Answered requests whose journal record is not final (a completion not stored, or the record lost). */
  readonly answeredNotFinalInJournal: number
  /** Of those, the requests the journal has no record of at all: their accept was lost (a failover without JOURNAL_MIN_REPLICAS). */
  readonly answeredMissingInJournal: number
  readonly startFailures: readonly string[]
  readonly samples: { lost: unknown[], wrong: unknown[] }
  readonly batch?: BatchLegReport
}

export function summarize (input: SummaryInput): ChaosReport {
  const { options, requests, journal } = input
  const answered = requests.filter((r) => r.fate === 'answered')
  const lostRequests = requests.filter((r) => r.fate === 'lost' || r.fate === 'pending' || r.forgotten)
  const wrongRequests = requests.filter((r) => r.fate === 'wrong')
  const latencies = (list: readonly LogicalRequest[]): Latency => {
    const sorted = list.map((r) => (r.answeredAt as number) - r.sentAt).sort((a, b) => a - b)
    return { count: sorted.length, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99), maxMs: sorted.at(-1) }
  }
  const byModel: Record<string, number> = {}
  for (const r of requests) byModel[r.item.model] = (byModel[r.item.model] ?? 0) + 1

  const takeovers = input.fleet.flatMap((i) => i.takeovers).sort((a, b) => a - b)
  const killEvents = input.kills.map((raw) => {
    const kill = raw.attributed ? raw : { ...raw, affected: raw.affected.filter((r) => (r.replayAttempts ?? 0) > 0) }
    const answers = kill.affected.filter((r) => r.answeredAt !== undefined).map((r) => (r.answeredAt as number) - kill.at).sort((a, b) => a - b)
    const takeover = takeovers.find((at) => at >= kill.at)
    return {
      instance: kill.instance,
      atS: round(kill.loadOffsetMs / 1000, 1),
      inflight: kill.affected.length,
      ...(takeover !== undefined && { takeoverMs: takeover - kill.at }),
      ...(answers.length > 0 && { firstAnswerMs: answers[0], lastAnswerMs: answers[answers.length - 1] }),
      unanswered: kill.affected.length - answers.length
    }
  })
  const lastAnswers = killEvents.flatMap((e) => (e.lastAnswerMs === undefined ? [] : [e.lastAnswerMs]))
  const takeoverDelays = killEvents.flatMap((e) => (e.takeoverMs === undefined ? [] : [e.takeoverMs]))

  const fleetCounters: Record<string, number> = {}
  for (const instance of input.fleet) {
    for (const [name, value] of instance.counters) fleetCounters[name] = (fleetCounters[name] ?? 0) + value
  }

  const fleetLog = { handedOffAtNotice: 0, handedOffAtDeadline: 0, takeoverInstances: 0, takeoverRequests: 0, replayClaims: 0, leaseLost: 0, gaveUp: 0, batchShardsHandedBack: 0, batchShardsTakenOver: 0 }
  for (const instance of input.fleet) {
    for (const key of Object.keys(fleetLog) as Array<keyof typeof fleetLog>) fleetLog[key] += instance.logged[key]
  }

  return {
    settings: {
      durationS: Math.round((input.loadEnd - input.loadStart) / 100) / 10,
      instances: options.instances,
      concurrency: options.concurrency,
      seed: options.seed,
      intervalS: options.intervalS,
      settleS: options.settleS,
      leaseTtlMs: options.leaseTtlMs,
      drainGraceMs: options.drainGraceMs,
      drainTimeoutMs: options.drainTimeoutMs,
      spinShare: options.spinShare,
      asyncShare: options.asyncShare,
      balancer: options.balancer,
      redis: options.redis,
      minReplicas: options.minReplicas
    },
    interrupted: input.interrupted,
    sent: requests.length,
    byModel,
    async: requests.filter((r) => r.async).length,
    refused: input.refusals.length,
    redisEvents: input.redisEvents.map((event) => {
      const until = event.healthyAt ?? input.settledAt
      const during = input.refusals.filter((at) => at >= event.at && at <= until)
      return {
        server: event.server,
        atS: round(event.loadOffsetMs / 1000, 1),
        refused: during.length,
        ...(during.length > 0 && { lastRefusalMs: Math.max(...during) - event.at }),
        ...(event.restartedAt !== undefined && { restartedMs: event.restartedAt - event.at }),
        ...(event.healthyAt !== undefined && { healthyMs: event.healthyAt - event.at }),
        ...(event.healthError !== undefined && { healthError: event.healthError })
      }
    }),
    answeredFirstTime: answered.filter((r) => r.firstTime).length,
    answeredAfterRetry: answered.filter((r) => !r.firstTime).length,
    handedOff: requests.filter((r) => r.handedOff).length,
    replayed: answered.filter((r) => (r.replayAttempts ?? 0) > 0).length,
    lost: lostRequests.length,
    forgotten: requests.filter((r) => r.forgotten).length,
    wrong: wrongRequests.length,
    latency: { firstTime: latencies(answered.filter((r) => r.firstTime)), all: latencies(answered) },
    kills: input.kills.length,
    drains: input.drains.length,
    killToLastAnswer: {
      ...(lastAnswers.length > 0 && { maxMs: Math.max(...lastAnswers), meanMs: Math.round(lastAnswers.reduce((a, b) => a + b, 0) / lastAnswers.length) }),
      events: killEvents
    },
    killToTakeover: takeoverDelays.length === 0 ? {} : { maxMs: Math.max(...takeoverDelays), meanMs: Math.round(takeoverDelays.reduce((a, b) => a + b, 0) / takeoverDelays.length) },
    drainEvents: input.drains.map((d) => ({
      instance: d.instance,
      atS: round(d.loadOffsetMs / 1000, 1),
      inflight: d.inflight,
      exitCode: d.exit?.code ?? null,
      exitSignal: d.exit?.signal ?? null,
      forced: d.exit?.forced ?? false,
      ...(d.exit !== undefined && { exitMs: d.exit.afterMs })
    })),
    settleMs: Math.max(0, input.settledAt - input.loadEnd),
    wallS: round((Date.now() - input.wallStart) / 1000, 1),
    fleetCounters,
    fleetLog,
    replayBacklogAtEnd: journal.replayBacklog,
    answeredNotFinalInJournal: answered.filter((r) => { const state = journal.records.get(r.id)?.state; return state !== 'done' && state !== 'failed' }).length,
    answeredMissingInJournal: answered.filter((r) => (journal.records.get(r.id)?.state ?? null) === null).length,
    startFailures: input.startFailures,
    ...(input.batch !== undefined && { batch: input.batch }),
    samples: {
      lost: lostRequests.slice(0, 10).map((r) => ({ id: r.id, model: r.item.model, posts: r.posts, polls: r.polls, handedOff: r.handedOff, forgotten: r.forgotten, journalState: journal.records.get(r.id)?.state ?? null, lastPost: r.lastPost?.name })),
      wrong: wrongRequests.slice(0, 10).map((r) => ({ id: r.id, model: r.item.model, variant: r.item.variant, reason: r.wrongReason }))
    }
  }
}

/** True when the run kept the guarantee: nothing lost, nothing wrong. */
export function passed (report: ChaosReport): boolean {
  return report.lost === 0 && report.wrong === 0 && !report.interrupted && (report.batch === undefined || batchLegPassed(report.batch))
}

function round (value: number, digits: number): number {
  const scale = 10 ** digits
  return Math.round(value * scale) / scale
}

const ms = (value: number | undefined): string => (value === undefined ? '-' : value >= 10_000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`)

function counter (report: ChaosReport, name: string): number {
  return report.fleetCounters[name] ?? 0
}

function drainExitLine (report: ChaosReport): string {
  const times = report.drainEvents.flatMap((d) => (d.exitMs === undefined ? [] : [d.exitMs]))
  if (times.length === 0) return '-'
  const s = report.settings
  return `max ${ms(Math.max(...times))}, mean ${ms(times.reduce((a, b) => a + b, 0) / times.length)}  (the deadline is DRAIN_TIMEOUT_MS ${s.drainTimeoutMs} after the signal)`
}

/** The summary table the CLI prints. */
export function formatReport (report: ChaosReport): string {
  const s = report.settings
  const replays = (outcome: string): number => counter(report, `spotgate_replays_total{outcome="${outcome}"}`)
  const log = report.fleetLog
  const drainExits = report.drainEvents.map((d) => (d.forced ? 'forced' : d.exitCode === null ? `${d.exitSignal ?? 'running'}` : `exit ${d.exitCode}`))
  const exitCounts = [...new Set(drainExits)].map((e) => `${drainExits.filter((x) => x === e).length}× ${e}`).join(', ') || 'none'
  const killLine = report.killToLastAnswer.maxMs === undefined
    ? 'no kill had requests in flight'
    : `max ${ms(report.killToLastAnswer.maxMs)}, mean ${ms(report.killToLastAnswer.meanMs)} over ${report.killToLastAnswer.events.filter((e) => e.lastAnswerMs !== undefined).length} kills`
  const rows: Array<[string, string]> = [
    ['sent', `${report.sent}  (${Object.entries(report.byModel).map(([m, n]) => `${m} ${n}`).join(', ')}; ${report.async} with respond-async)`],
    ['refused (503, sent again)', String(report.refused)],
    ['answered first time', String(report.answeredFirstTime)],
    ['answered after retry/poll', String(report.answeredAfterRetry)],
    ['handed off (503 + Location)', String(report.handedOff)],
    ['replayed by a peer', `${report.replayed}  (fleet replays_total: done ${replays('done')}, failed ${replays('failed')}, skipped ${replays('skipped')}, handed_off ${replays('handed_off')}, error ${replays('error')}, gave_up ${replays('gave_up')})`],
    [report.interrupted ? 'lost or unfinished (interrupted)' : 'lost', `${report.lost}${report.forgotten > 0 ? `  (${report.forgotten} accepted, then unknown)` : ''}`],
    ['wrong answers', String(report.wrong)],
    ['latency, first-time p50 / p99', `${ms(report.latency.firstTime.p50Ms)} / ${ms(report.latency.firstTime.p99Ms)}  (all answers: ${ms(report.latency.all.p50Ms)} / ${ms(report.latency.all.p99Ms)}, max ${ms(report.latency.all.maxMs)})`],
    ['SIGKILL → last answer', killLine],
    ['SIGKILL → takeover', `${report.killToTakeover.maxMs === undefined ? '-' : `max ${ms(report.killToTakeover.maxMs)}, mean ${ms(report.killToTakeover.meanMs)}`}  (LEASE_TTL_MS ${s.leaseTtlMs} + a reap every ${s.leaseTtlMs / 2} ms; the rest is the replays' queue: longest spin ${SLOWEST_SPIN_MS} ms on an idle core)`],
    ['kills / drains', `${report.kills} / ${report.drains}  (drains: ${exitCounts})`],
    ['SIGTERM → exit', drainExitLine(report)],
    ['replay claims (logs)', `${log.replayClaims}${log.gaveUp > 0 ? `, ${log.gaveUp} gave up` : ''}`],
    ['lease takeovers (logs)', `${log.takeoverInstances} instances, ${log.takeoverRequests} requests${log.leaseLost > 0 ? `; ${log.leaseLost} instances found their lease lost` : ''}`],
    ['drain hand-offs (logs)', `${log.handedOffAtNotice} queued at the notice, ${log.handedOffAtDeadline} running at the deadline`],
    ['left in replay stream', String(report.replayBacklogAtEnd)],
    ['settle after load', ms(report.settleMs)],
    ...batchRows(report)
  ]
  const width = Math.max(...rows.map(([label]) => label.length))
  const lines = [
    `spotgate chaos — ${s.durationS} s load, ${s.instances} instances ${s.balancer === 'haproxy' ? 'behind HAProxy' : '(client-side balancing)'}, ${s.concurrency} clients, seed ${s.seed}, event every ${s.intervalS} s, Redis ${s.redis} (JOURNAL_MIN_REPLICAS ${s.minReplicas}), wall ${report.wallS} s${report.interrupted ? ' (INTERRUPTED)' : ''}`,
    ...rows.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`)
  ]
  for (const event of report.killToLastAnswer.events) {
    lines.push(`    SIGKILL ${event.instance} at ${event.atS} s: ${event.inflight} in flight; taken over after ${ms(event.takeoverMs)}; answered from ${ms(event.firstAnswerMs)} to ${ms(event.lastAnswerMs)} after the kill${event.unanswered > 0 ? `, ${event.unanswered} never` : ''}`)
  }
  for (const event of report.redisEvents) {
    lines.push(`    SIGKILL Redis primary ${event.server} at ${event.atS} s: ${event.refused} refusals until healthy${event.lastRefusalMs === undefined ? '' : ` (the last ${ms(event.lastRefusalMs)} after the kill)`}; restarted after ${ms(event.restartedMs)}, ${event.healthyMs === undefined ? `not healthy again: ${event.healthError ?? 'run ended'}` : `healthy again after ${ms(event.healthyMs)}`}`)
  }
  for (const event of report.drainEvents) {
    lines.push(`    SIGTERM ${event.instance} at ${event.atS} s: ${event.inflight} in flight, ${event.forced ? 'did not exit in time (SIGKILLed)' : `exit ${event.exitCode ?? event.exitSignal} after ${ms(event.exitMs)}`}`)
  }
  if (report.answeredNotFinalInJournal > 0) lines.push(`  note: ${report.answeredNotFinalInJournal} answered requests are not final in the journal${report.answeredMissingInJournal > 0 ? ` (${report.answeredMissingInJournal} have no record at all)` : ''}`)
  for (const failure of report.startFailures) lines.push(`  start failure: ${failure}`)
  for (const sample of report.samples.lost) lines.push(`  LOST ${JSON.stringify(sample)}`)
  for (const sample of report.samples.wrong) lines.push(`  WRONG ${JSON.stringify(sample)}`)
  for (const sample of report.batch?.samples ?? []) lines.push(`  BATCH ${sample}`)
  const batch = report.batch === undefined ? '' : `; batch: ${report.batch.lost} lines lost, ${report.batch.duplicated} duplicated, ${report.batch.wrong} wrong`
  lines.push(passed(report) ? `PASS: 0 lost, 0 wrong${batch}` : `FAIL: ${report.lost} lost, ${report.wrong} wrong${batch}${report.interrupted ? ', interrupted' : ''}`)
  return lines.join('\n')
}

function batchRows (report: ChaosReport): Array<[string, string]> {
  const batch = report.batch
  if (batch === undefined) return []
  const shards = (outcome: string): number => counter(report, `spotgate_batch_shards_total{outcome="${outcome}"}`)
  const counts = batch.requestCounts
  return [
    ['batch', `${batch.lines} lines, ${batch.status}${batch.finishedMs === undefined ? '' : ` ${ms(batch.finishedMs)} after it was submitted`}  (request_counts ${counts.completed} completed, ${counts.failed} failed of ${counts.total})`],
    ['batch lines lost / duplicated / wrong', `${batch.lost} / ${batch.duplicated} / ${batch.wrong}${batch.errorLines > 0 ? `  (${batch.errorLines} in the error file)` : ''}`],
    ['batch shards', `committed ${shards('committed')}, stale ${shards('stale')} (last scrapes); taken over ${report.fleetLog.batchShardsTakenOver}, handed back at a drain ${report.fleetLog.batchShardsHandedBack} (logs)`]
  ]
}
