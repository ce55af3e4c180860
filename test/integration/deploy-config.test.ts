import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { readFileSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { ROOT as REPO_ROOT } from '../../scripts/lib/paths.js'
import { allServersUp, renderConfig } from '../../scripts/lib/haproxy.js'
import { findBinary } from '../../scripts/lib/process.js'
import { loadConfig } from '../../src/config.js'
import { interpolate, loadCompose, parseYamlDocuments } from '../helpers/compose.js'

// The deployment files are checked as the tools that read them would (the Compose
// specification's JSON schema and interpolation, haproxy 2.6 from Debian) and against
// each other: drain timing, probes and the gateway's own configuration schema.

const ROOT = `${REPO_ROOT}/`
const HAPROXY_CFG = join(ROOT, 'deploy/haproxy/haproxy.cfg')

function run (command: string, args: string[], input?: string): { status: number | null, stdout: string, stderr: string } {
  const result = spawnSync(command, args, { cwd: ROOT, input, encoding: 'utf8', timeout: 60_000 })
  if (result.error !== undefined) throw new Error(`cannot run ${command}: ${result.error.message}`)
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

const COMPOSE_FILE = join(ROOT, 'docker-compose.yml')

/** A Compose variable reference, `${…}`. */
const variable = (inner: string): string => `\${${inner}}`

/** Seconds of a Compose duration such as `35s` or `1m30s`. */
function seconds (duration: string): number {
  let total = 0
  for (const [, n, unit] of duration.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) total += Number(n) * { ms: 0.001, s: 1, m: 60, h: 3600 }[unit as 'ms' | 's' | 'm' | 'h']
  return total
}

test('docker-compose.yml is a valid Compose file: the specification\'s schema, references and interpolation', () => {
  assert.doesNotThrow(() => loadCompose(COMPOSE_FILE))
})

test('docker-compose.override.yml publishes the ports the README lists; docker-compose.host.yml puts every service on the host network', () => {
  const base = loadCompose(COMPOSE_FILE)
  for (const service of Object.values(base.services)) assert.equal(service.ports, undefined, 'ports are published by the override only')
  const published = loadCompose(join(ROOT, 'docker-compose.override.yml'))
  assert.deepEqual(Object.fromEntries(Object.entries(published.services).map(([name, s]) => [name, s.ports])), {
    'fake-metadata': ['1338:1338'], haproxy: ['8080:8080', '8404:8404'], prometheus: ['9090:9090'], grafana: ['3000:3000']
  })
  const hostFile = join(ROOT, 'docker-compose.host.yml')
  const host = loadCompose(hostFile, { HAPROXY_CONFIG: '/tmp/haproxy.cfg', PROMETHEUS_CONFIG: '/tmp/prometheus.yml' })
  assert.deepEqual(Object.keys(host.services).sort(), Object.keys(base.services).sort(), 'every service of docker-compose.yml')
  for (const [name, service] of Object.entries(host.services)) {
    assert.equal(service.network_mode, 'host', name)
    assert.equal(service.ports, undefined, name)
  }
  // Each service its own default loopback port.
  const defaults = [...readFileSync(hostFile, 'utf8').matchAll(/\$\{([A-Z0-9_]+_PORT):-(\d+)\}/g)]
  const byVariable = new Map(defaults.map(([, variable, port]) => [variable, port]))
  assert.equal(new Set(byVariable.values()).size, byVariable.size, `distinct ports: ${JSON.stringify([...byVariable])}`)
  for (const n of [1, 2, 3]) {
    const env = host.services[`gateway-${n}`].environment
    assert.equal(env.HOST, '127.0.0.1')
    assert.equal(env.PORT, byVariable.get(`GATEWAY_${n}_PORT`))
    assert.equal(env.REDIS_URL, `redis://127.0.0.1:${byVariable.get('REDIS_PORT') ?? ''}`)
    assert.equal(env.AWS_METADATA_URL, `http://127.0.0.1:${byVariable.get('METADATA_PORT') ?? ''}/gateway-${n}`)
  }
  assert.throws(() => loadCompose(hostFile), /HAPROXY_CONFIG is required/)
})

test('the Compose check refuses what docker-compose refuses', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'spotgate-compose-check-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const cases: Array<[string, string, RegExp]> = [
    ['an unknown service key', 'services:\n  a:\n    image: x\n    restartt: always\n', /additional properties.*restartt/],
    ['a stop_grace_period that is no duration', 'services:\n  a:\n    image: x\n    stop_grace_period: soon\n', /stop_grace_period must match format "duration"/],
    ['a port mapping that is no port', 'services:\n  a:\n    image: x\n    ports: ["80:http"]\n', /ports\/0 must match format "ports"/],
    ['a dependency on a service that does not exist', 'services:\n  a:\n    image: x\n    depends_on: [b]\n', /depends on undefined service b/],
    ['a named volume never declared', 'services:\n  a:\n    image: x\n    volumes: ["data:/data"]\n', /mounts undefined volume data/],
    ['a required variable left unset', `services:\n  a:\n    image: "${variable('IMAGE:?set IMAGE')}"\n`, /IMAGE is required/]
  ]
  for (const [what, text, expected] of cases) {
    const file = join(dir, 'compose.yml')
    await writeFile(file, text)
    assert.throws(() => loadCompose(file), expected, what)
  }
  assert.equal(interpolate(`${variable('A:-x')}-${variable('B-y')}-$${variable('C')}`, { A: '', B: '' }), `x--${variable('C')}`)
})

test('the Compose gateways form one fleet: distinct ids, one journal, fake AWS notices, drain-sized stop grace', () => {
  const compose = loadCompose(COMPOSE_FILE)
  const services = compose.services as Record<string, any>
  const gateways = Object.entries(services).filter(([name]) => name.startsWith('gateway-'))
  assert.equal(gateways.length, 3)
  const ids = new Set<string>()
  for (const [name, service] of gateways) {
    const env = service.environment as Record<string, string>
    ids.add(env.INSTANCE_ID)
    assert.equal(env.REDIS_URL, 'redis://redis:6379', name)
    assert.ok(env.ADMIN_TOKEN, `${name}: ADMIN_TOKEN`)
    assert.equal(env.PREEMPTION_SOURCES, 'aws', name)
    assert.equal(env.AWS_METADATA_URL, `http://fake-metadata:1338/${env.INSTANCE_ID}`, name)
    assert.equal(service.restart, 'on-failure', name)
    const drainSeconds = (Number(env.DRAIN_GRACE_MS) + Number(env.DRAIN_TIMEOUT_MS)) / 1000
    assert.ok(seconds(service.stop_grace_period) > drainSeconds, `${name}: stop_grace_period ${service.stop_grace_period} covers the drain (${drainSeconds} s)`)
    // The environment is one the gateway accepts.
    assert.doesNotThrow(() => loadConfig({ ...env, MODEL_REPOSITORY: ROOT }, false), name)
  }
  assert.equal(ids.size, 3, 'every gateway has its own INSTANCE_ID')
  const redis = (services.redis.command as string[]).join(' ')
  assert.match(redis, /--appendonly yes/)
  assert.match(redis, /--appendfsync (always|everysec)/)
  const volumes = JSON.stringify(services.prometheus.volumes) + JSON.stringify(services.grafana.volumes) + JSON.stringify(services.haproxy.volumes)
  for (const file of ['deploy/prometheus/prometheus.yml', 'deploy/prometheus/alerts.yml', 'deploy/grafana/provisioning', 'deploy/grafana/spotgate-dashboard.json', 'deploy/haproxy/haproxy.cfg']) {
    assert.ok(volumes.includes(join(ROOT, file)), `${file} is mounted`)
  }
})

test('haproxy -c accepts the shipped configuration (Compose hostnames unresolved here) and its loopback rendering', async (t) => {
  const shipped = run(findBinary('haproxy') ?? 'haproxy', ['-c', '-f', HAPROXY_CFG])
  assert.equal(shipped.status, 0, shipped.stderr)
  // Only the Compose service names may be unresolvable (init-addr none keeps them for DNS at run time).
  const warnings = shipped.stderr.split('\n').filter((l) => l.includes('[WARNING]') && !/could not resolve address 'gateway-\d'/.test(l))
  assert.deepEqual(warnings, [])

  const dir = await mkdtemp(join(tmpdir(), 'spotgate-haproxy-check-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const rendered = renderConfig(await readFile(HAPROXY_CFG, 'utf8'), {
    bind: '127.0.0.1:18080',
    statsBind: '127.0.0.1:18404',
    statsSocket: join(dir, 'admin.sock'),
    servers: [{ name: 'gateway-1', address: '127.0.0.1:18081' }, { name: 'gateway-2', address: '127.0.0.1:18082' }]
  })
  await writeFile(join(dir, 'haproxy.cfg'), rendered)
  const loopback = run(findBinary('haproxy') ?? 'haproxy', ['-c', '-f', join(dir, 'haproxy.cfg')])
  assert.equal(loopback.status, 0, loopback.stderr)
  assert.doesNotMatch(loopback.stderr, /WARNING|ALERT/)
  assert.doesNotMatch(rendered, /resolvers|gateway-3|:8080/)
})

test('the shipped HAProxy configuration checks /health/ready and retries only what is safe to retry', () => {
  const cfg = readFileSync(HAPROXY_CFG, 'utf8')
  assert.match(cfg, /http-check send meth GET uri \/health\/ready/)
  assert.match(cfg, /default-server check inter \d+m?s fastinter \d+m?s .*fall \d rise \d/)
  assert.match(cfg, /retry-on conn-failure empty-response 503/)
  assert.match(cfg, /acl has_idempotency_key req\.hdr\(idempotency-key\) -m found/)
  assert.match(cfg, /http-request disable-l7-retry if !has_idempotency_key/)
  assert.match(cfg, /option redispatch/)
})

test('the Kubernetes manifests agree with the drain settings and select the same pods', () => {
  const dir = join(ROOT, 'deploy/k8s')
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'))
  const docs = parseYamlDocuments(files.map((f) => readFileSync(join(dir, f), 'utf8')).join('\n---\n'))
  const kinds = (kind: string): any[] => docs.filter((d) => d.kind === kind)
  const config = kinds('ConfigMap').find((c) => c.metadata.name === 'spotgate')
  assert.ok(config, 'a spotgate ConfigMap')
  assert.doesNotThrow(() => loadConfig({ ...config.data, MODEL_REPOSITORY: ROOT }, false), 'the ConfigMap is a valid gateway configuration')
  const drainSeconds = (Number(config.data.DRAIN_GRACE_MS) + Number(config.data.DRAIN_TIMEOUT_MS)) / 1000

  const deployments = kinds('Deployment').filter((d) => d.metadata.labels['app.kubernetes.io/name'] === 'spotgate')
  assert.ok(deployments.length >= 1)
  for (const deployment of deployments) {
    const name = deployment.metadata.name as string
    const pod = deployment.spec.template.spec
    const container = pod.containers[0]
    const preStop = Number(container.lifecycle.preStop.exec.command.at(-1))
    assert.ok(preStop > 0 && preStop <= 5, `${name}: a short preStop sleep`)
    assert.ok(pod.terminationGracePeriodSeconds > preStop + drainSeconds,
      `${name}: terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} > preStop ${preStop} + drain ${drainSeconds}`)
    assert.equal(container.readinessProbe.httpGet.path, '/health/ready')
    assert.ok(container.readinessProbe.periodSeconds <= 2 && container.readinessProbe.failureThreshold <= 2, `${name}: readiness noticed within seconds`)
    assert.equal(container.livenessProbe.httpGet.path, '/health/live')
    assert.ok(container.envFrom.some((e: any) => e.configMapRef?.name === 'spotgate'), `${name}: env from the ConfigMap`)
    assert.ok(container.resources.requests.cpu && container.resources.requests.memory, `${name}: resource requests`)
    assert.equal(container.ports[0].containerPort, 8080)
    assert.deepEqual(deployment.spec.selector.matchLabels, Object.fromEntries(Object.entries(deployment.spec.template.metadata.labels).filter(([k]) => k in deployment.spec.selector.matchLabels)))
    assert.equal(deployment.spec.template.metadata.annotations['prometheus.io/scrape'], 'true')
  }
  const selects = (selector: Record<string, string>, labels: Record<string, string>): boolean => Object.entries(selector).every(([k, v]) => labels[k] === v)
  const service = kinds('Service').find((s) => s.metadata.name === 'spotgate')
  const pdb = kinds('PodDisruptionBudget')[0]
  const monitor = kinds('ServiceMonitor')[0]
  for (const deployment of deployments) {
    const labels = deployment.spec.template.metadata.labels
    assert.ok(selects(service.spec.selector, labels), `the Service selects ${deployment.metadata.name}'s pods`)
    assert.ok(selects(pdb.spec.selector.matchLabels, labels), `the PodDisruptionBudget covers ${deployment.metadata.name}'s pods`)
  }
  assert.ok(selects(monitor.spec.selector.matchLabels, service.metadata.labels), 'the ServiceMonitor selects the Service')
  assert.equal(monitor.spec.endpoints[0].port, service.spec.ports[0].name)
  const redis = kinds('StatefulSet').find((s) => s.metadata.name === 'spotgate-redis')
  assert.match(redis.spec.template.spec.containers[0].args.join(' '), /--appendonly yes/)
})

test('the images run the compiled entry as PID 1, as a non-root user, with a health check', async () => {
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> }
  for (const file of ['Dockerfile', 'Dockerfile.cuda']) {
    const text = await readFile(join(ROOT, file), 'utf8')
    const runtime = text.slice(text.lastIndexOf('\nFROM '))
    assert.match(runtime, /^CMD \["node", "dist\/src\/main\.js"\]$/m, `${file}: exec-form CMD`)
    assert.ok(pkg.bin.spotgate === 'dist/src/main.js', `${file}: the CMD is package.json's bin`)
    assert.match(runtime, /^USER (?!root)\S+$/m, `${file}: non-root`)
    assert.match(runtime, /^HEALTHCHECK .*\n?.*\/health\/live/m, `${file}: HEALTHCHECK on /health/live`)
    assert.match(runtime, /^STOPSIGNAL SIGTERM$/m)
    assert.match(runtime, /^EXPOSE 8080$/m)
    assert.match(text, /npm ci --omit=dev/, `${file}: production dependencies only`)
    assert.match(text, /npm run build/)
    // Node 24 from the official image, copied into the runtime; uid 1000 as deploy/k8s runs it.
    assert.match(text, /^FROM node:24-bookworm-slim AS node$/m, `${file}: Node 24`)
    assert.match(runtime, /^COPY --from=node \/usr\/local\/bin\/node \/usr\/local\/bin\/node$/m, `${file}: node in the runtime`)
    assert.match(runtime, /^USER 1000:1000$/m, `${file}: uid 1000, numeric for runAsNonRoot`)
    // Other platforms' native builds pruned; an incomplete install fails the build, in the
    // dependencies stage and again on what ships.
    assert.match(text, /node dist\/scripts\/prune-modules\.js node_modules/, `${file}: prune`)
    assert.match(text, /node dist\/scripts\/check-install\.js( \\)?\n/, `${file}: check-install after npm ci`)
    assert.match(runtime, /^RUN node dist\/scripts\/check-install\.js --model /m, `${file}: check-install on the runtime`)
  }
  const cuda = await readFile(join(ROOT, 'Dockerfile.cuda'), 'utf8')
  assert.match(cuda, /ONNXRUNTIME_NODE_INSTALL=cuda12/)
  assert.match(cuda, /EXECUTION_PROVIDERS=cuda,cpu/)
  assert.match(cuda, /nvidia\/cuda:12[^\s]*cudnn[^\s]*runtime/)
  assert.match(await readFile(join(ROOT, 'Dockerfile'), 'utf8'), /^FROM debian:bookworm-slim$/m, 'the CPU runtime: the slim Debian that node:24-bookworm-slim is built on, without npm')
})

test('a server counts as UP only once its health check has passed, and the backend row is not a server', () => {
  const row = (svname: string, status: string, checkStatus: string): Record<string, string> => ({ pxname: 'gateways', svname, status, check_status: checkStatus })
  // HAProxy shows a server UP from its start, before the first check has run.
  assert.equal(allServersUp([row('g1', 'UP', 'L7OK'), row('g2', 'UP', 'INI')], ['g1', 'g2']), false)
  assert.equal(allServersUp([row('g1', 'UP', 'L7OK'), row('g2', 'UP 1/2', 'L7STS')], ['g1', 'g2']), false)
  assert.equal(allServersUp([row('g1', 'UP', 'L7OK'), row('BACKEND', 'UP', '')], ['g1', 'g2']), false)
  assert.equal(allServersUp([row('g1', 'UP', 'L7OK'), row('g2', 'UP', 'L7OK'), row('BACKEND', 'UP', '')], ['g1', 'g2']), true)
})
