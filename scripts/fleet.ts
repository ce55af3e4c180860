// Usage: npm run fleet [-- --instances 3] [--port 8080] [--preempt [--duration 12] [--concurrency 9] [--runs 1]]
//
// The docker-compose.yml topology without Docker, on 127.0.0.1: redis-server (AOF on),
// N gateways sharing its journal, a fake EC2 metadata service per gateway (so a
// preemption is a real AWS spot notice), and HAProxy in front with
// deploy/haproxy/haproxy.cfg. Prints where everything is and runs until Ctrl-C.
//
// --preempt: sends a bounded load through HAProxy (every request with an
// Idempotency-Key, from a client that polls its Location like a real one), gives one
// gateway an AWS spot notice halfway through, prints what happened, stops everything
// and exits 0, or 1 when a request was lost or failed. --runs N repeats the whole
// scenario N times on fresh fleets and ends with a summary of all runs.
//
// Needs redis-server and haproxy (Debian: apt-get install -y redis-server haproxy).
// Gateway variables in the environment (DRAIN_GRACE_MS, LOG_LEVEL...) override the
// fleet's defaults; logs go to the run directory it prints.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { runLoad, summarize } from './lib/client.js'
import { missingPackages, scrape, startFleet, type Fleet, type FleetGateway } from './lib/fleet.js'
import { sumSamples } from './lib/process.js'
import { writeSampleRepository, writeSpin } from './models/catalog.js'

const { values } = parseArgs({
  options: {
    instances: { type: 'string', default: '3' },
    port: { type: 'string' },
    preempt: { type: 'boolean', default: false },
    duration: { type: 'string', default: '12' },
    concurrency: { type: 'string', default: '9' },
    runs: { type: 'string', default: '1' },
    help: { type: 'boolean', short: 'h', default: false }
  }
})
if (values.help) {
  console.log('usage: npm run fleet [-- --instances N] [--port P] [--preempt [--duration S] [--concurrency C] [--runs N]]')
  process.exit(0)
}
const instances = positiveInteger('instances', values.instances, 1, 16)
const durationMs = positiveInteger('duration', values.duration, 4, 120) * 1000
const concurrency = positiveInteger('concurrency', values.concurrency, 1, 256)
const port = values.port === undefined ? undefined : positiveInteger('port', values.port, 1, 65535)
const runs = positiveInteger('runs', values.runs, 1, 1000)
if (values.preempt && instances < 2) fail('--preempt needs at least 2 instances: one to preempt, one to replay its work')
if (runs > 1 && !values.preempt) fail('--runs repeats --preempt; add --preempt')

const missing = missingPackages()
if (missing.length > 0) fail(`${missing.join(' and ')} not found; install with: sudo apt-get install -y ${missing.join(' ')}`)

// Spin iterations per request: about 20 ms of CPU, so requests queue behind each other
// and a drain has queued work to hand off (catalog.ts: ~3.9 ms per 1000 iterations).
const SPIN_ITERATIONS = 5000

const started = Date.now()
const stamp = (): string => `[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s]`
const say = (line: string): void => console.log(`${stamp()} ${line}`)

let fleet: Fleet | undefined
let stopping = false
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    // A second Ctrl-C does not wait: the exit handler SIGKILLs whatever still runs.
    if (stopping) process.exit(130)
    stopping = true
    console.log(`\n${stamp()} ${signal}: stopping everything (the gateways drain first; Ctrl-C again to kill)`)
    void (fleet?.stop() ?? Promise.resolve()).then(() => {
      console.log(`${stamp()} stopped`)
      process.exit(signal === 'SIGINT' ? 130 : 143)
    })
  })
}

if (!values.preempt) {
  const { dir, modelRepository } = await prepareRun()
  say(`starting redis-server, ${instances} gateways and haproxy (logs in ${dir})`)
  fleet = await startFleet({ instances, dir, modelRepository, port }).catch((error: Error) => fail(error.message))
  printWhere(fleet)
  say('running; Ctrl-C stops everything')
  await new Promise(() => {})
}

const outcomes: PreemptOutcome[] = []
for (let run = 1; run <= runs && !stopping; run++) {
  const { dir, modelRepository } = await prepareRun()
  say(`${runs > 1 ? `run ${run} of ${runs}: ` : ''}starting redis-server, ${instances} gateways and haproxy (logs in ${dir})`)
  const current = fleet = await startFleet({ instances, dir, modelRepository, port }).catch((error: Error) => fail(error.message))
  if (runs === 1) printWhere(current)
  const outcome = await preempt(current)
  outcomes.push(outcome)
  say('stopping everything')
  await current.stop()
  // The run directory is kept when something went wrong: the gateways' logs say what.
  if (outcome.ok) await rm(dir, { recursive: true, force: true })
  else say(`logs kept in ${dir}`)
}
say('stopped')
if (runs > 1) printSummary(outcomes)
process.exit(outcomes.length === runs && outcomes.every((o) => o.ok) ? 0 : 1)

/** A fresh run directory with the sample models and the spin model the load uses. */
async function prepareRun (): Promise<{ dir: string, modelRepository: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'spotgate-fleet-'))
  const modelRepository = join(dir, 'models')
  await writeSampleRepository(modelRepository)
  await writeSpin(modelRepository)
  return { dir, modelRepository }
}

function printSummary (all: readonly PreemptOutcome[]): void {
  const total = (key: 'sent' | 'answered' | 'lost' | 'failed' | 'handedOff' | 'replayed'): number => all.reduce((sum, o) => sum + o[key], 0)
  const passedRuns = all.filter((o) => o.ok).length
  console.log(`\n  ${all.length} preemption runs under load: ${passedRuns} passed, ${all.length - passedRuns} failed`)
  console.log(`    requests sent ${total('sent')}, answered ${total('answered')}, lost ${total('lost')}, failed ${total('failed')}; handed off ${total('handedOff')}, replayed by peers ${total('replayed')}`)
  for (const [index, o] of all.entries()) {
    if (!o.ok) console.log(`    run ${index + 1}: ${o.why.join('; ')}`)
  }
  console.log(passedRuns === all.length ? `\n  OK: ${all.length} of ${all.length} preemptions absorbed, 0 lost\n` : '\n  FAILED\n')
}

/** The gateway --preempt preempts: the middle one. */
function victimOf (fleet: Fleet): FleetGateway {
  return fleet.gateways[Math.floor(fleet.gateways.length / 2)]
}

function printWhere (fleet: Fleet): void {
  const victim = victimOf(fleet)
  console.log(`
  load balancer  ${fleet.haproxy.url}        (HAProxy; stats ${fleet.haproxy.statsUrl}, socket ${fleet.haproxy.socket})
  redis          ${fleet.redisUrl}
  fake IMDS      ${fleet.imds.url}       (status: ${fleet.imds.url}/_status)
${fleet.gateways.map((g) => `  ${g.name.padEnd(14)} ${g.url}        (pid ${g.child.pid ?? '?'}, log ${g.logFile})`).join('\n')}
  admin token    ${fleet.adminToken}

  curl -s ${fleet.haproxy.url}/infer -H 'content-type: application/json' -H 'Idempotency-Key: demo-1' \\
    -d '{"model":"classifier","inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[0.1,0.2,0.3,0.4]}]}'
  curl -s -X POST ${fleet.imds.url}/_trigger/${victim.name}        # AWS spot notice for ${victim.name}
  curl -s -X POST ${victim.url}/admin/drain -H 'Authorization: Bearer ${fleet.adminToken}'
`)
}

interface PreemptOutcome {
  readonly ok: boolean
  readonly why: readonly string[]
  readonly sent: number
  readonly answered: number
  readonly lost: number
  readonly failed: number
  readonly handedOff: number
  readonly replayed: number
}

async function preempt (fleet: Fleet): Promise<PreemptOutcome> {
  const victim = victimOf(fleet)
  const metrics = new Map<string, Map<string, number>>()
  const haproxyStatus = new Map<string, string>()
  let watching = true
  let draining = false

  // Watchers, bounded by the scenario: the gateways' counters (the victim's last scrape
  // is kept after it exits) and HAProxy's view of each server.
  const watchMetrics = (async () => {
    while (watching) {
      await Promise.all(fleet.gateways.map(async (g) => {
        const samples = g.child.running ? await scrape(g.url) : undefined
        if (samples === undefined) return
        metrics.set(g.name, samples)
        if (g === victim && !draining && sumSamples(samples, 'spotgate_draining') === 1) {
          draining = true
          say(`${victim.name}: draining (readiness 503; still serving for DRAIN_GRACE_MS)`)
        }
      }))
      await sleep(250)
    }
  })()
  const watchHaproxy = (async () => {
    while (watching) {
      const rows = await fleet.haproxy.stats().catch(() => [])
      for (const row of rows) {
        if (row.pxname !== 'gateways' || row.svname === 'BACKEND' || row.svname === 'FRONTEND') continue
        const previous = haproxyStatus.get(row.svname)
        if (previous !== undefined && previous !== row.status) say(`HAProxy: ${row.svname} ${previous} -> ${row.status}`)
        haproxyStatus.set(row.svname, row.status)
      }
      await sleep(100)
    }
  })()

  say(`load: ${concurrency} clients for ${durationMs / 1000} s through ${fleet.haproxy.url}, model spin (~20 ms a request), every request with an Idempotency-Key`)
  const load = runLoad({
    baseUrl: fleet.haproxy.url,
    concurrency,
    durationMs,
    requestDeadlineMs: 60_000,
    keyPrefix: `fleet-${Date.now().toString(36)}`,
    body: (n) => ({
      model: 'spin',
      inputs: [
        { name: 'iterations', shape: [1], datatype: 'INT64', data: [SPIN_ITERATIONS] },
        { name: 'x', shape: [1, 64], datatype: 'FP32', data: Array.from({ length: 64 }, (_, i) => ((n + i) % 17) / 17) }
      ]
    })
  })

  await sleep(Math.min(4000, durationMs / 3))
  const notice = fleet.imds.trigger(victim.name)
  say(`AWS spot notice for ${victim.name}: ${notice.action} at ${notice.time} (fake IMDS spot/instance-action now answers 200)`)
  void victim.child.exited.then((exit) => say(`${victim.name} exited (code ${exit.code ?? exit.signal})`))

  const results = await load
  say(`load finished: ${results.length} logical requests`)
  const exit = await Promise.race([victim.child.exited, sleep(45_000).then(() => undefined)])
  if (exit === undefined) say(`${victim.name} still running 45 s after the notice`)
  // Replays of the last hand-offs may still be finishing on the peers.
  await sleep(1000)
  watching = false
  await Promise.all([watchMetrics, watchHaproxy])

  const backend = await fleet.haproxy.row('BACKEND').catch(() => undefined)
  const counters = (name: string, ...labels: string[]): number =>
    [...metrics.values()].reduce((sum, samples) => sum + sumSamples(samples, name, ...labels), 0)
  const s = summarize(results)
  const victimDown = ['DOWN', 'MAINT'].some((status) => (haproxyStatus.get(victim.name) ?? '').startsWith(status))
  const handedOff = counters('spotgate_handoffs_total')
  const lines = [
    ['requests sent', s.sent],
    ['answered (200)', s.answered],
    ['  answered after polling Location', s.polled],
    ['  re-sent by the client', s.retriedByClient],
    ['retried by HAProxy (backend wretr / wredis)', backend === undefined ? '?' : `${backend.wretr} / ${backend.wredis}`],
    ['5xx HAProxy passed to clients', backend?.hrsp_5xx ?? '?'],
    ['AWS notices received', counters('spotgate_preemption_notices_total', 'source="aws"')],
    [`handed off by ${victim.name}`, handedOff],
    ['replayed by peers (done)', counters('spotgate_replays_total', 'outcome="done"')],
    ['lost (accepted, never answered)', s.lost],
    ['failed client requests', s.failed]
  ] as const
  console.log(`\n  ${victim.name} preempted under load:`)
  for (const [label, value] of lines) console.log(`    ${label.padEnd(46)} ${value}`)
  for (const r of results.filter((r) => r.ending !== 'answered').slice(0, 5)) console.log(`    ${r.ending}: ${r.key} ${JSON.stringify(r.trail)}`)

  const ok = s.lost === 0 && s.failed === 0 && s.answered === s.sent && exit?.code === 0 && victimDown
  const why = [
    s.lost > 0 && `${s.lost} lost`,
    s.failed > 0 && `${s.failed} failed`,
    exit?.code !== 0 && `${victim.name} did not drain and exit 0`,
    !victimDown && `HAProxy never marked ${victim.name} down`
  ].filter((reason): reason is string => typeof reason === 'string')
  console.log(ok ? '\n  OK: the preemption was absorbed, no client request lost or failed\n' : `\n  FAILED: ${why.join('; ')}\n`)
  return { ok, why, sent: s.sent, answered: s.answered, lost: s.lost, failed: s.failed, handedOff, replayed: counters('spotgate_replays_total', 'outcome="done"') }
}

function positiveInteger (name: string, value: string, min: number, max: number): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < min || n > max) fail(`--${name}: expected an integer from ${min} to ${max}, got ${value}`)
  return n
}

function fail (message: string): never {
  console.error(`fleet: ${message}`)
  process.exit(1)
}
