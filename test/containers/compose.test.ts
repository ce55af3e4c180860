import assert from 'node:assert/strict'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, test } from 'node:test'
import { runLoad, summarize } from '../../scripts/lib/client.js'
import { containerLogs, containerState, dockerOk } from '../../scripts/lib/docker.js'
import { renderConfig, SHIPPED_CONFIG } from '../../scripts/lib/haproxy.js'
import { repoPath } from '../../scripts/lib/paths.js'
import { answers200, stablePort, waitUntil } from '../../scripts/lib/process.js'
import { compose, postJson, prometheusImage, readmeInferBody, renderPrometheusConfig, testImage } from '../helpers/containers.js'

// docker-compose.yml run by Compose as far as stand-in images allow (Redis, the fake
// metadata service, two gateways, HAProxy, Prometheus; Grafana has no stand-in), on the
// host's network through docker-compose.host.yml, every service on its own loopback
// port. A spot notice through the fake metadata service drains one gateway while a
// client keeps sending keyed requests through HAProxy: nothing is lost.

const SERVICES = ['redis', 'fake-metadata', 'gateway-1', 'gateway-2', 'haproxy', 'prometheus']
const project = `spotgate-test-${process.pid}`
const ports: Record<string, number> = {}
let env: Record<string, string>
let dir: string

const gatewayUrl = (n: number): string => `http://127.0.0.1:${ports[`GATEWAY_${n}_PORT`]}`
const haproxyUrl = (): string => `http://127.0.0.1:${ports.HAPROXY_PORT}`
/** Container ids by service, read once all are up (Compose v1 and v2 name them differently). */
const containers: Record<string, string> = {}
const container = (service: string): string => containers[service] ?? `${project}_${service}_1`

/** HAProxy's view of each gateway (`UP`, `DOWN`, ...), from its stats CSV. */
async function serverStatus (): Promise<Record<string, string>> {
  const csv = await (await fetch(`http://127.0.0.1:${ports.HAPROXY_STATS_PORT}/stats;csv`, { signal: AbortSignal.timeout(2000) })).text()
  const [header, ...rows] = csv.split('\n').filter((l) => l.trim() !== '')
  const columns = header.replace(/^# /, '').split(',')
  const at = (name: string): number => columns.indexOf(name)
  return Object.fromEntries(rows.map((r) => r.split(',')).filter((r) => r[at('pxname')] === 'gateways' && r[at('svname')].startsWith('gateway-')).map((r) => [r[at('svname')], r[at('status')]]))
}

async function logsOf (...services: string[]): Promise<string> {
  const parts = await Promise.all(services.map(async (s) => `--- ${s}\n${(await containerLogs(container(s)).catch(() => '')).slice(-3000)}`))
  return parts.join('\n')
}

before(async () => {
  const image = await testImage()
  for (const name of ['REDIS_PORT', 'METADATA_PORT', 'GATEWAY_1_PORT', 'GATEWAY_2_PORT', 'GATEWAY_3_PORT', 'HAPROXY_PORT', 'HAPROXY_STATS_PORT', 'PROMETHEUS_PORT']) {
    ports[name] = await stablePort()
  }
  dir = await mkdtemp(join(tmpdir(), 'spotgate-compose-'))
  await chmod(dir, 0o755)
  const haproxyConfig = join(dir, 'haproxy.cfg')
  await writeFile(haproxyConfig, renderConfig(await readFile(SHIPPED_CONFIG, 'utf8'), {
    bind: `127.0.0.1:${ports.HAPROXY_PORT}`,
    statsBind: `127.0.0.1:${ports.HAPROXY_STATS_PORT}`,
    // Inside the container, where HAProxy's user can write.
    statsSocket: '/tmp/haproxy-admin.sock',
    servers: [1, 2].map((n) => ({ name: `gateway-${n}`, address: `127.0.0.1:${ports[`GATEWAY_${n}_PORT`]}` }))
  }))
  const prometheusConfig = join(dir, 'prometheus.yml')
  await writeFile(prometheusConfig, renderPrometheusConfig(await readFile(repoPath('deploy', 'prometheus', 'prometheus.yml'), 'utf8'), {
    gateways: [1, 2].map((n) => ({ name: `gateway-${n}`, address: `127.0.0.1:${ports[`GATEWAY_${n}_PORT`]}` })),
    haproxy: `127.0.0.1:${ports.HAPROXY_STATS_PORT}`
  }))
  // Read by HAProxy's and Prometheus's own users in their containers.
  await Promise.all([chmod(haproxyConfig, 0o644), chmod(prometheusConfig, 0o644)])
  env = {
    ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
    SPOTGATE_IMAGE: image,
    PROMETHEUS_IMAGE: await prometheusImage(),
    HAPROXY_CONFIG: haproxyConfig,
    PROMETHEUS_CONFIG: prometheusConfig,
    ADMIN_TOKEN: `test-${process.pid}`
  }
  const up = await compose(project, ['docker-compose.host.yml'], env, ['up', '-d', '--no-build', '--no-deps', ...SERVICES])
  assert.equal(up.code, 0, `compose up failed:\n${up.stderr}${up.stdout}`)
  for (const service of SERVICES) {
    const ps = await compose(project, ['docker-compose.host.yml'], env, ['ps', '-q', service], 60_000)
    containers[service] = ps.stdout.trim()
    assert.ok(containers[service] !== '', `no container for ${service}: ${ps.stderr}`)
  }
}, { timeout: 900_000 })

after(async () => {
  if (env !== undefined) {
    const down = await compose(project, ['docker-compose.host.yml'], env, ['down', '--volumes', '--timeout', '40'])
    if (down.code !== 0) console.error(`compose down failed:\n${down.stderr}`)
  }
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
}, { timeout: 120_000 })

describe('the Compose topology on host networking', { timeout: 300_000 }, () => {
  test('comes up on loopback ports only, with no network of its own', async () => {
    const ready = await waitUntil(async () => await answers200(`${gatewayUrl(1)}/health/ready`) && await answers200(`${gatewayUrl(2)}/health/ready`), 120_000, 250)
    assert.ok(ready, `gateways not ready:\n${await logsOf('gateway-1', 'gateway-2', 'redis')}`)
    const balanced = await waitUntil(async () => Object.values(await serverStatus()).filter((s) => s === 'UP').length === 2, 30_000, 250)
    assert.ok(balanced, `HAProxy: ${JSON.stringify(await serverStatus().catch((e: Error) => e.message))}\n${await logsOf('haproxy')}`)
    const networks = await dockerOk(['network', 'ls', '--filter', `label=com.docker.compose.project=${project}`, '--format', '{{.Name}}'])
    assert.equal(networks, '', 'Compose created no network')
    for (const service of SERVICES) {
      const mode = await dockerOk(['inspect', '--format', '{{.HostConfig.NetworkMode}}', container(service)])
      assert.equal(mode, 'host', service)
    }
    // Both gateways journal in the Compose Redis, under their Compose names.
    for (const n of [1, 2]) assert.match(await containerLogs(container(`gateway-${n}`)), new RegExp(`"instance":"gateway-${n}".*"journal":"redis","msg":"ready"`))
  })

  test('answers the README\'s request through HAProxy, and Prometheus scrapes the gateways and HAProxy', async () => {
    const infer = await postJson(`${haproxyUrl()}/infer`, readmeInferBody(), { 'Idempotency-Key': `compose-${process.pid}` })
    assert.equal(infer.status, 200, JSON.stringify(infer.body))
    const prometheus = `http://127.0.0.1:${ports.PROMETHEUS_PORT}`
    let targets: Array<{ labels: Record<string, string>, health: string, lastError: string }> = []
    const scraped = await waitUntil(async () => {
      const body = await (await fetch(`${prometheus}/api/v1/targets`, { signal: AbortSignal.timeout(2000) })).json() as { data: { activeTargets: typeof targets } }
      targets = body.data.activeTargets
      return targets.length === 3 && targets.every((t) => t.health === 'up')
    }, 60_000, 1000)
    assert.ok(scraped, `Prometheus targets: ${JSON.stringify(targets.map((t) => [t.labels.job, t.labels.instance, t.health, t.lastError]))}\n${await logsOf('prometheus')}`)
    assert.deepEqual(targets.filter((t) => t.labels.job === 'spotgate').map((t) => t.labels.instance).sort(), ['gateway-1', 'gateway-2'])
  })

  test('a spot notice drains gateway-2 under keyed load through HAProxy: nothing lost, exit 0, it stays down', async (t) => {
    const statuses = new Set<string>()
    let watching = true
    const watch = (async () => {
      while (watching) {
        const status = (await serverStatus().catch(() => ({})) as Record<string, string>)['gateway-2']
        if (status !== undefined) statuses.add(status.split(' ')[0])
        await sleep(100)
      }
    })()
    const body = readmeInferBody() as { inputs: Array<{ data: number[] }> }
    const load = runLoad({
      baseUrl: haproxyUrl(),
      concurrency: 6,
      durationMs: 14_000,
      requestDeadlineMs: 60_000,
      keyPrefix: `compose-${process.pid}-${Date.now().toString(36)}`,
      body: (n) => ({ ...body, inputs: [{ ...body.inputs[0], data: body.inputs[0].data.map((x, i) => x + ((n + i) % 7) / 10) }] })
    })
    await sleep(4000)
    const notice = await fetch(`http://127.0.0.1:${ports.METADATA_PORT}/_trigger/gateway-2`, { method: 'POST', signal: AbortSignal.timeout(2000) })
    assert.equal(notice.status, 200)
    const results = await load
    const exited = await waitUntil(async () => !(await containerState(container('gateway-2'))).running, 60_000, 500)
    watching = false
    await watch

    const s = summarize(results)
    t.diagnostic(`through HAProxy during the drain: ${JSON.stringify(s)}; HAProxy saw gateway-2 ${[...statuses].join(' → ')}`)
    const logs = await logsOf('gateway-2')
    assert.ok(s.sent > 100, `a real load: ${JSON.stringify(s)}`)
    assert.equal(s.lost, 0, JSON.stringify(s))
    assert.equal(s.failed, 0, `${JSON.stringify(s)}\n${results.filter((r) => r.ending !== 'answered').slice(0, 5).map((r) => JSON.stringify(r.trail)).join('\n')}`)
    assert.equal(s.answered, s.sent)
    assert.ok(exited, `gateway-2 still running a minute after the notice:\n${logs}`)
    const state = await containerState(container('gateway-2'))
    assert.equal(state.exitCode, 0, logs)
    assert.match(logs, /"source":"aws".*"msg":"preemption notice received"/)
    assert.match(logs, /"msg":"drained; exiting"/)
    assert.ok(statuses.has('DOWN'), `HAProxy took gateway-2 out (saw ${[...statuses].join(', ')})`)
    // restart: on-failure: a drain is no failure, so the preempted replica stays down.
    await sleep(2000)
    assert.equal((await containerState(container('gateway-2'))).status, 'exited')
    assert.ok(await answers200(`${gatewayUrl(1)}/health/ready`), 'gateway-1 still serves')
  })
})
