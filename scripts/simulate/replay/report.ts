import type { ChaosInstance } from '../../chaos/instance.js'
import { percentile } from '../../chaos/util.js'
import type { LogicalRequest } from '../../lib/client.js'
import type { JournalRecord } from '../../lib/journal-records.js'
import { sumSamples } from '../../lib/process.js'
import type { ReplayOptions } from '../options.js'
import type { PlayedInstance, ReplayPlan } from './schedule.js'

// What a replay did, counted from the clients' side (every answer checked), the journal
// (which answers a peer computed after a hand-off), the gateways' logs and metrics, and
// the processes' lifetimes (priced as the trace's instances would be).

/** One gateway process of the replay: a trace instance played. */
export interface InstanceRun {
  readonly played: PlayedInstance
  readonly name: string
  /** Trace seconds at which it was started. */
  readonly traceAtS: number
  launchedAt: number
  instance?: ChaosInstance
  ready?: Promise<void>
  readyAt?: number
  startFailure?: string
  notice?: { sentAt: number, deadline: number }
  killedAtRemoval?: boolean
}

export interface ReplayInput {
  readonly plan: ReplayPlan
  readonly options: ReplayOptions
  readonly runs: readonly InstanceRun[]
  readonly results: readonly LogicalRequest[]
  readonly wrong: ReadonlyArray<{ key: string, why: string }>
  readonly journal: { records: ReadonlyMap<string, JournalRecord>, replayBacklog: number }
  /** The last /metrics scrape of each gateway. */
  readonly scrapes: ReadonlyArray<Map<string, number>>
  /** When the trace's time began and ended on the wall clock (epoch ms). */
  readonly traceStartAt: number
  readonly traceEndAt: number
  readonly wallStart: number
  readonly interrupted: boolean
}

export interface ReplayReport {
  readonly trace: { name: string, hours: number, cloud: string, speed: number, noticeS: number, wallNoticeS: number }
  /** The trace's instance count, scaled down to what this machine runs. */
  readonly scaled: { maxInstances: number, instancesPlayed: number, instancesInTrace: number, peakPlayed: number, peakInTrace: number, removalsPlayed: number, removalsInTrace: number }
  readonly requests: { sent: number, answered: number, replayed: number, lost: number, wrong: number, retriedByClient: number, polled: number }
  /** Spot notices delivered, one per removal played. */
  readonly preemptions: number
  readonly notices: { sent: number, delivered: number, drainedAndExited0: number, takenAwayMidDrain: number }
  /** Gateway processes started. */
  readonly instances: number
  readonly coldStartS: { mean?: number, max?: number }
  readonly wallSeconds: number
  readonly latencyMs: { p50?: number, p99?: number, max?: number }
  /** Requests a peer computed after a hand-off: the client's wait (ms), and the gateways' hand-off-to-answer time. */
  readonly replayDelays: { count: number, clientP50Ms?: number, clientMaxMs?: number, handOffToAnswerMeanMs?: number, handedOffAtNotice: number, handedOffAtDeadline: number }
  readonly cost: { unit: string, traceInstanceHours: number, processWallSeconds: number, processTraceHours: number, spot: number, onDemand: number }
  readonly leftInReplayStream: number
  readonly startFailures: string[]
  readonly samples: { lost: unknown[], wrong: unknown[] }
  readonly interrupted: boolean
}

const round = (value: number, digits = 1): number => Math.round(value * 10 ** digits) / 10 ** digits

export function summarize (input: ReplayInput): ReplayReport {
  const { plan, runs, results, journal } = input
  const answered = results.filter((r) => r.ending === 'answered')
  const lost = results.filter((r) => r.ending !== 'answered')
  const replayed = answered.filter((r) => (journal.records.get(r.key)?.attempts ?? 0) > 0)
  const noticed = runs.filter((r) => r.notice !== undefined)
  const latencies = answered.map((r) => r.ms).sort((a, b) => a - b)
  const replayLatencies = replayed.map((r) => r.ms).sort((a, b) => a - b)
  const coldStarts = runs.flatMap((r) => (r.readyAt === undefined || r.traceAtS === 0 ? [] : [(r.readyAt - r.launchedAt) / 1000]))
  const sum = (name: string): number => input.scrapes.reduce((total, samples) => total + sumSamples(samples, name), 0)
  const handOffCount = sum('spotgate_replay_latency_seconds_count')
  const logged = (key: keyof ChaosInstance['logged']): number => runs.reduce((total, r) => total + (r.instance?.logged[key] ?? 0), 0)

  // Billed as the cloud bills: from launch (the trace's start for those running then) to exit
  // (or to the trace's end for those still running then).
  let processWallSeconds = 0
  let spot = 0
  let onDemand = 0
  for (const run of runs) {
    if (run.instance === undefined) continue
    const end = Math.min(run.instance.exitStatus?.at ?? input.traceEndAt, input.traceEndAt)
    const seconds = Math.max(0, end - Math.max(run.launchedAt, input.traceStartAt)) / 1000
    processWallSeconds += seconds
    const traceHours = (seconds * plan.speed) / 3600
    spot += traceHours * (plan.trace.prices.spot.get(run.played.zone) ?? 0)
    onDemand += traceHours * plan.trace.prices.onDemand
  }
  const traceInstanceHours = plan.played.reduce((total, p) => total + (p.removeS ?? plan.spanS) - p.addS, 0) / 3600

  return {
    trace: { name: plan.trace.name, hours: round(plan.spanS / 3600, 4), cloud: plan.trace.cloud, speed: plan.speed, noticeS: plan.noticeS, wallNoticeS: round(plan.noticeS / plan.speed, 2) },
    scaled: {
      maxInstances: plan.maxInstances,
      instancesPlayed: plan.played.length,
      instancesInTrace: plan.inTrace.instances,
      peakPlayed: plan.peakPlayed,
      peakInTrace: plan.inTrace.peak,
      removalsPlayed: plan.played.filter((p) => p.removeS !== undefined).length,
      removalsInTrace: plan.inTrace.removals
    },
    requests: {
      sent: results.length,
      answered: answered.length,
      replayed: replayed.length,
      lost: lost.length,
      wrong: input.wrong.length,
      retriedByClient: results.filter((r) => r.posts > 1).length,
      polled: results.filter((r) => r.polls > 0).length
    },
    preemptions: noticed.length,
    notices: {
      sent: noticed.length,
      delivered: noticed.filter((r) => r.instance?.notices.includes('aws') === true).length,
      drainedAndExited0: noticed.filter((r) => r.killedAtRemoval !== true && r.instance?.exitStatus?.code === 0).length,
      takenAwayMidDrain: noticed.filter((r) => r.killedAtRemoval === true).length
    },
    instances: runs.filter((r) => r.instance !== undefined).length,
    coldStartS: coldStarts.length === 0 ? {} : { mean: round(coldStarts.reduce((a, b) => a + b, 0) / coldStarts.length, 2), max: round(Math.max(...coldStarts), 2) },
    wallSeconds: round((Date.now() - input.wallStart) / 1000),
    latencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1) },
    replayDelays: {
      count: replayed.length,
      clientP50Ms: percentile(replayLatencies, 50),
      clientMaxMs: replayLatencies.at(-1),
      ...(handOffCount > 0 && { handOffToAnswerMeanMs: Math.round((sum('spotgate_replay_latency_seconds_sum') / handOffCount) * 1000) }),
      handedOffAtNotice: logged('handedOffAtNotice'),
      handedOffAtDeadline: logged('handedOffAtDeadline')
    },
    cost: { unit: plan.trace.prices.unit, traceInstanceHours: round(traceInstanceHours, 3), processWallSeconds: round(processWallSeconds), processTraceHours: round((processWallSeconds * plan.speed) / 3600, 3), spot: round(spot, 2), onDemand: round(onDemand, 2) },
    leftInReplayStream: journal.replayBacklog,
    startFailures: runs.flatMap((r) => (r.startFailure === undefined ? [] : [`${r.name}: ${r.startFailure}`])),
    samples: {
      lost: lost.slice(0, 10).map((r) => ({ key: r.key, ending: r.ending, trail: r.trail.slice(-12), journalState: journal.records.get(r.key)?.state ?? null })),
      wrong: input.wrong.slice(0, 10)
    },
    interrupted: input.interrupted
  }
}

/** The guarantee held: nothing lost, nothing wrong, every removal delivered as a notice, every gateway started. */
export function passed (report: ReplayReport): boolean {
  return !report.interrupted && report.requests.lost === 0 && report.requests.wrong === 0 &&
    report.notices.delivered === report.preemptions && report.preemptions === report.scaled.removalsPlayed && report.startFailures.length === 0
}

const ms = (value: number | undefined): string => (value === undefined ? '-' : value >= 10_000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`)

export function formatReplay (report: ReplayReport, logDir?: string): string {
  const { trace, scaled, requests, notices, replayDelays, cost } = report
  const rows: Array<[string, string]> = [
    ['trace', `${trace.name}, ${trace.hours} h at ${trace.speed}×: ${trace.noticeS} s ${trace.cloud} notices last ${trace.wallNoticeS} s (rounded up to whole seconds, as IMDS writes them)`],
    ['scaled down', `${scaled.instancesPlayed} of the trace's ${scaled.instancesInTrace} instances played, at most ${scaled.peakPlayed} at once (cap ${scaled.maxInstances}; the trace has up to ${scaled.peakInTrace}); ${scaled.removalsPlayed} of its ${scaled.removalsInTrace} removals`],
    ['requests', `${requests.sent} sent through HAProxy, ${requests.answered} answered, ${requests.replayed} of them computed by a peer after a hand-off (${requests.polled} polled a Location, ${requests.retriedByClient} re-sent by the client)`],
    ['lost', String(requests.lost)],
    ['wrong answers', String(requests.wrong)],
    ['preemptions', `${report.preemptions} AWS spot notices sent through the fake IMDS, ${notices.delivered} received by their gateway; ${notices.drainedAndExited0} drained and exited 0 before the notice's time, ${notices.takenAwayMidDrain} still draining then (SIGKILL; peers took their work over)`],
    ['hand-offs', `${replayDelays.handedOffAtNotice} queued requests at the notice, ${replayDelays.handedOffAtDeadline} running at the deadline (gateway logs)`],
    ['replay delays', replayDelays.count === 0 ? 'none: every drain finished its own work' : `client wait p50 ${ms(replayDelays.clientP50Ms)}, max ${ms(replayDelays.clientMaxMs)}${replayDelays.handOffToAnswerMeanMs === undefined ? '' : `; hand-off to answer ${ms(replayDelays.handOffToAnswerMeanMs)} on average (gateway metrics)`}`],
    ['latency', `p50 ${ms(report.latencyMs.p50)}, p99 ${ms(report.latencyMs.p99)}, max ${ms(report.latencyMs.max)}`],
    ['gateways', `${report.instances} processes started; cold start (start to ready) ${report.coldStartS.mean === undefined ? '-' : `${report.coldStartS.mean} s mean, ${report.coldStartS.max} s max`}`],
    ['instance time', `${cost.processWallSeconds} process-seconds = ${cost.processTraceHours} h of trace time at ${trace.speed}× (the played instances' own lifetimes: ${cost.traceInstanceHours} h); at the trace's prices spot ${cost.spot.toFixed(2)} against on-demand ${cost.onDemand.toFixed(2)} ${cost.unit}`],
    ['wall', `${report.wallSeconds} s${report.leftInReplayStream > 0 ? `; ${report.leftInReplayStream} entries left in the replay stream` : ''}`]
  ]
  const width = Math.max(...rows.map(([label]) => label.length))
  const lines = [`spotgate replay${report.interrupted ? ' (INTERRUPTED)' : ''}`, ...rows.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`)]
  for (const failure of report.startFailures) lines.push(`  start failure: ${failure}`)
  for (const sample of report.samples.lost) lines.push(`  LOST ${JSON.stringify(sample)}`)
  for (const sample of report.samples.wrong) lines.push(`  WRONG ${JSON.stringify(sample)}`)
  if (logDir !== undefined) lines.push(`  logs kept in ${logDir}`)
  lines.push(passed(report) ? 'PASS: 0 lost, 0 wrong, every removal delivered as a notice' : 'FAIL')
  return lines.join('\n')
}
