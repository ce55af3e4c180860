import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { after, before, test } from 'node:test'
import { ROOT as REPO_ROOT } from '../../scripts/lib/paths.js'
import { GatewayProcess } from '../helpers/gateway-process.js'
import { makeRepository } from '../helpers/model-repo.js'
import { RedisServer } from '../helpers/redis-server.js'
import { classifierBody } from '../helpers/requests.js'

// The Prometheus side of the contract, checked with the real tools (Debian's
// `prometheus` package; .ci/run installs it): the live /metrics output lints clean,
// the alerting rules and the scrape configuration load, and the dashboard and the
// rules reference only metrics the server exports.

const ROOT = `${REPO_ROOT}/`
const DASHBOARD = `${ROOT}deploy/grafana/spotgate-dashboard.json`
const ALERTS = `${ROOT}deploy/prometheus/alerts.yml`
const ALERT_TESTS = `${ROOT}deploy/prometheus/alerts.test.yml`
const PROMETHEUS_CONFIG = `${ROOT}deploy/prometheus/prometheus.yml`
const METRICS_SOURCE = `${ROOT}src/metrics.ts`

/** The families the README's "Metrics" lists; the dashboard shows each of them. */
const REQUIRED_ON_DASHBOARD = [
  'spotgate_requests_total', 'spotgate_request_duration_seconds', 'spotgate_inference_duration_seconds',
  'spotgate_queue_duration_seconds', 'spotgate_batch_size', 'spotgate_inflight_requests', 'spotgate_ready',
  'spotgate_draining', 'spotgate_preemption_notices_total', 'spotgate_handoffs_total', 'spotgate_replays_total',
  'spotgate_journal_duration_seconds', 'spotgate_journal_errors_total', 'spotgate_execution_provider_info',
  'spotgate_batch_lines_total', 'spotgate_batch_shards_total', 'spotgate_batches'
]

function promtool (args: string[], input?: string): { status: number | null, output: string } {
  const result = spawnSync('promtool', args, { input, encoding: 'utf8', timeout: 30_000 })
  if (result.error !== undefined) throw new Error(`cannot run promtool (apt-get install -y prometheus): ${result.error.message}`)
  return { status: result.status, output: `${result.stdout}${result.stderr}` }
}

/** Every `spotgate_*` name in a text (expressions, descriptions, legends alike). */
function referencedMetrics (text: string): Set<string> {
  return new Set(text.match(/\bspotgate_[a-z0-9_]+/g) ?? [])
}

/** Family names with their types: from `# TYPE` lines of an exposition, and from the definitions in src/metrics.ts. */
function exportedFamilies (exposition: string): Map<string, string> {
  const families = new Map<string, string>()
  for (const [, name, type] of exposition.matchAll(/^# TYPE (spotgate_\S+) (\S+)$/gm)) families.set(name, type)
  // Families without labels-to-be-observed are in the exposition already; these also cover
  // labelled families no request has touched yet.
  const source = readFileSync(METRICS_SOURCE, 'utf8')
  for (const [, kind, name] of source.matchAll(/new (Counter|Gauge|Histogram|Summary)\(\{\s*name:\s*'(spotgate_[a-z0-9_]+)'/g)) {
    if (!families.has(name)) families.set(name, kind.toLowerCase())
  }
  return families
}

/** The series names a family exposes: a histogram's _bucket, _sum and _count. */
function seriesNames (families: Map<string, string>): Set<string> {
  const names = new Set<string>()
  for (const [name, type] of families) {
    names.add(name)
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name}${suffix}`)
    if (type === 'summary') for (const suffix of ['_sum', '_count']) names.add(`${name}${suffix}`)
  }
  return names
}

let exposition = ''

before(async () => {
  const redis = await RedisServer.start()
  after(() => redis.stop())
  const repo = await makeRepository(['classifier', 'tabular'])
  after(repo.cleanup)
  const gateway = await GatewayProcess.start({ after }, { env: { MODEL_REPOSITORY: repo.dir, REDIS_URL: redis.url } })
  await gateway.waitReady()
  // A few requests, so labelled families have series: answered, replayed, invalid, unknown model.
  const keyed = { headers: { 'idempotency-key': 'observability-1' } }
  assert.equal((await gateway.post('/infer', { model: 'classifier', ...classifierBody(2) }, keyed)).status, 200)
  assert.equal((await gateway.post('/infer', { model: 'classifier', ...classifierBody(2) }, keyed)).status, 200)
  assert.equal((await gateway.post('/v2/models/classifier/infer', classifierBody(1))).status, 200)
  assert.equal((await gateway.post('/infer', { model: 'classifier', inputs: [] })).status, 400)
  assert.equal((await gateway.post('/infer', { model: 'no-such-model', ...classifierBody(1) })).status, 404)
  const response = await gateway.fetch('/metrics')
  assert.equal(response.status, 200)
  exposition = await response.text()
  assert.match(exposition, /^spotgate_journal_duration_seconds_count\{op="accept"\} [1-9]/m, 'the Redis journal reports its latency')
})

test('promtool check metrics passes on the live /metrics output', () => {
  const { status, output } = promtool(['check', 'metrics'], exposition)
  assert.equal(status, 0, `promtool check metrics found problems:\n${output}`)
})

test('promtool check rules passes on the alerting rules, and their unit tests pass', () => {
  const rules = promtool(['check', 'rules', ALERTS])
  assert.equal(rules.status, 0, rules.output)
  const unit = promtool(['test', 'rules', ALERT_TESTS])
  assert.equal(unit.status, 0, unit.output)
})

test('promtool check config passes on the Compose scrape configuration', () => {
  const { status, output } = promtool(['check', 'config', PROMETHEUS_CONFIG])
  assert.equal(status, 0, output)
})

test('the dashboard and the alerting rules reference only metrics the server exports', () => {
  const exported = seriesNames(exportedFamilies(exposition))
  for (const file of [DASHBOARD, ALERTS, ALERT_TESTS]) {
    const unknown = [...referencedMetrics(readFileSync(file, 'utf8'))].filter((name) => !exported.has(name))
    assert.deepEqual(unknown, [], `${file} references metrics the server does not export`)
  }
})

test('the dashboard shows every metric family of the design\'s minimum set', () => {
  const text = readFileSync(DASHBOARD, 'utf8')
  const shown = new Set([...referencedMetrics(text)].map((name) => name.replace(/_(bucket|sum|count)$/, '')))
  assert.deepEqual(REQUIRED_ON_DASHBOARD.filter((name) => !shown.has(name)), [])
})

test('the dashboard is importable Grafana JSON: unique panel ids, every query on the datasource variable', () => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
    uid: string
    panels: Array<{ id: number, type: string, title: string, gridPos: object, datasource?: { uid: string }, targets?: Array<{ expr: string }> }>
    templating: { list: Array<{ name: string, type: string }> }
  }
  assert.equal(dashboard.uid, 'spotgate')
  const ids = dashboard.panels.map((p) => p.id)
  assert.equal(new Set(ids).size, ids.length, 'panel ids are unique')
  assert.ok(dashboard.templating.list.some((v) => v.name === 'datasource' && v.type === 'datasource'))
  for (const panel of dashboard.panels.filter((p) => p.type !== 'row')) {
    assert.ok(panel.gridPos !== undefined, `${panel.title}: gridPos`)
    // Grafana's own variable syntax, not a template literal.
    assert.equal(panel.datasource?.uid, '$' + '{datasource}', `${panel.title}: datasource`)
    assert.ok((panel.targets ?? []).length > 0 && panel.targets?.every((t) => t.expr.length > 0), `${panel.title}: queries`)
  }
})
