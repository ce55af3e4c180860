// Usage: npm run cold-start [-- --image spotgate:latest] [--build] [--runs 3] [--only image|process] [--pull-size] [--json FILE]
//
// How long a replacement machine takes from "start it" to serving: `docker run` of the
// image, and `node dist/src/main.js` on the host, each until GET /health/ready answers
// 200, and where that time goes, from the gateway's own log records:
//   container       docker run until the container's process started (image layers, namespaces)
//   process start   until Fastify listens (Node, imports, configuration, journal)
//   model load      the slowest model version's instances started and sessions open
//   warm-up         the slowest version's warm-up runs
//   listening → ready   the models loading side by side, wall time
//   ready → 200     the readiness poll's own delay
// Pulling the image is not timed (no registry here): --pull-size reports what a pull
// transfers, the image's layers gzip-compressed as a registry stores them.
// Each run is a fresh process or container on a free loopback port, with no Redis and no
// cloud notice sources; medians (and ranges) over --runs. Needs a Docker daemon for the
// image (DOCKER_HOST); --build builds the image first.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { createGzip } from 'node:zlib'
import { buildImage, containerLogs, containerState, docker, dockerOk, imageSize, logRecords, removeContainers } from './lib/docker.js'
import { GATEWAY_ENTRY, repoPath } from './lib/paths.js'
import { answers200, freePort, waitUntil } from './lib/process.js'

const { values } = parseArgs({
  options: {
    image: { type: 'string', default: 'spotgate:latest' },
    build: { type: 'boolean', default: false },
    runs: { type: 'string', default: '3' },
    only: { type: 'string' },
    'pull-size': { type: 'boolean', default: false },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false }
  }
})
if (values.help) {
  console.log('usage: npm run cold-start [-- --image TAG] [--build] [--runs N] [--only image|process] [--pull-size] [--json FILE]')
  process.exit(0)
}
const runs = Number(values.runs)
if (!Number.isInteger(runs) || runs < 1 || runs > 20) fail(`--runs: expected an integer from 1 to 20, got ${values.runs}`)
if (values.only !== undefined && values.only !== 'image' && values.only !== 'process') fail(`--only: image or process, got ${values.only}`)

/** How long one start may take before the run counts as failed. */
const READY_TIMEOUT_MS = 120_000

const PHASES = ['container', 'processStart', 'modelLoad', 'warmup', 'listeningToReady', 'readyTo200', 'total'] as const
type Phase = typeof PHASES[number]
type Sample = Partial<Record<Phase, number>>

const LABELS: Record<Phase, string> = {
  container: 'docker run → container started',
  processStart: 'process start → listening',
  modelLoad: 'model load (slowest version)',
  warmup: 'warm-up (slowest version)',
  listeningToReady: 'listening → ready (models side by side)',
  readyTo200: 'ready → /health/ready 200',
  total: 'total: start → /health/ready 200'
}

/** Splits a start's log records into phases; `startedAt` is when the process itself began. */
function phases (records: ReadonlyArray<Record<string, unknown>>, t0: number, startedAt: number, ready200: number): Sample {
  const time = (predicate: (r: Record<string, unknown>) => boolean): number | undefined => records.find(predicate)?.time as number | undefined
  const listening = time((r) => typeof r.msg === 'string' && r.msg.startsWith('Server listening at'))
  const ready = time((r) => r.msg === 'ready')
  const loaded = records.filter((r) => typeof r.msg === 'string' && / loaded$/.test(r.msg) && typeof r.openMs === 'number')
  if (listening === undefined || ready === undefined || loaded.length === 0) {
    throw new Error(`the log lacks the listening, model loaded or ready records:\n${records.map((r) => JSON.stringify(r)).join('\n').slice(-2000)}`)
  }
  return {
    ...(startedAt !== t0 && { container: startedAt - t0 }),
    processStart: listening - startedAt,
    modelLoad: Math.max(...loaded.map((r) => r.openMs as number)),
    warmup: Math.max(...loaded.map((r) => r.warmupMs as number)),
    listeningToReady: ready - listening,
    readyTo200: Math.max(0, ready200 - ready),
    total: ready200 - t0
  }
}

/** When `url` first answered 200, polled every 10 ms; throws once `alive` says the server is gone. */
async function waitReady (url: string, alive: () => boolean): Promise<number> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (!alive()) throw new Error('the server exited before it was ready')
    if (await answers200(url, 500)) return Date.now()
    await sleep(10)
  }
  throw new Error(`${url} did not answer 200 within ${READY_TIMEOUT_MS / 1000} s`)
}

/** The variables both kinds of start get: loopback, no Redis, no cloud metadata traffic. */
function startEnv (port: number): Record<string, string> {
  return { HOST: '127.0.0.1', PORT: String(port), PREEMPTION_SOURCES: 'none', LOG_LEVEL: 'info' }
}

async function processRun (): Promise<Sample> {
  const port = await freePort()
  const cwd = await mkdtemp(join(tmpdir(), 'spotgate-cold-start-'))
  const env: NodeJS.ProcessEnv = { ...process.env, ...startEnv(port), MODEL_REPOSITORY: repoPath('models'), EXECUTION_PROVIDERS: 'cpu', NODE_ENV: 'production' }
  for (const name of ['REDIS_URL', 'REDIS_SENTINELS', 'REDIS_CLUSTER_NODES']) delete env[name]
  const t0 = Date.now()
  const child = spawn(process.execPath, [GATEWAY_ENTRY], { cwd, env, stdio: ['ignore', 'pipe', 'inherit'] })
  const lines: string[] = []
  createInterface({ input: child.stdout }).on('line', (line) => lines.push(line))
  let exited = false
  const closed = new Promise<void>((resolve) => child.once('close', () => { exited = true; resolve() }))
  try {
    const ready200 = await waitReady(`http://127.0.0.1:${port}/health/ready`, () => !exited)
    await waitUntil(() => lines.some((l) => l.includes('"msg":"ready"')), 2000, 10)
    return phases(logRecords(lines.join('\n')), t0, t0, ready200)
  } finally {
    child.kill('SIGKILL')
    await closed
    await rm(cwd, { recursive: true, force: true })
  }
}

/** The container of the run in progress, removed if this script is interrupted. */
let current: string | undefined
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    if (current !== undefined) spawnSync('docker', ['rm', '--force', current], { stdio: 'ignore', timeout: 30_000 })
    process.exit(130)
  })
}

async function imageRun (image: string, n: number): Promise<Sample> {
  const port = await freePort()
  const name = `spotgate-cold-start-${process.pid}-${n}`
  current = name
  const env = Object.entries(startEnv(port)).flatMap(([k, v]) => ['-e', `${k}=${v}`])
  const t0 = Date.now()
  try {
    await dockerOk(['run', '-d', '--name', name, '--network', 'host', ...env, image], { timeoutMs: 60_000 })
    // Whether the container still runs, asked once a second rather than on every poll.
    let running = true
    const watch = setInterval(() => { void containerState(name).then((state) => { running = state.running }, () => {}) }, 1000)
    const ready200 = await waitReady(`http://127.0.0.1:${port}/health/ready`, () => running)
      .catch(async (error: Error) => { throw new Error(`${error.message}\n${(await containerLogs(name)).slice(-2000)}`) })
      .finally(() => clearInterval(watch))
    const startedAt = Date.parse(await dockerOk(['inspect', '--format', '{{.State.StartedAt}}', name]))
    return phases(logRecords(await containerLogs(name)), t0, startedAt, ready200)
  } finally {
    await removeContainers(name)
    current = undefined
  }
}

/** Bytes of the image's layers gzip-compressed, about what a registry serves for a pull. */
async function compressedSize (image: string): Promise<number> {
  const save = spawn('docker', ['save', image], { stdio: ['ignore', 'pipe', 'inherit'] })
  let bytes = 0
  const gzip = save.stdout.pipe(createGzip())
  gzip.on('data', (chunk: Buffer) => { bytes += chunk.length })
  await new Promise<void>((resolve, reject) => { gzip.once('end', resolve); gzip.once('error', reject); save.once('error', reject) })
  return bytes
}

function median (xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

interface Summary { readonly median: Sample, readonly min: Sample, readonly max: Sample, readonly samples: readonly Sample[] }

function summarize (samples: readonly Sample[]): Summary {
  const pick = (f: (xs: number[]) => number): Sample => Object.fromEntries(PHASES.flatMap((p) => {
    const xs = samples.map((s) => s[p]).filter((x): x is number => x !== undefined)
    return xs.length === 0 ? [] : [[p, f(xs)]]
  }))
  return { median: pick(median), min: pick((xs) => Math.min(...xs)), max: pick((xs) => Math.max(...xs)), samples }
}

const seconds = (ms: number | undefined): string => (ms === undefined ? '–' : `${(ms / 1000).toFixed(2)} s`)
const cell = (summary: Summary | undefined, phase: Phase): string => {
  if (summary === undefined || summary.median[phase] === undefined) return '–'
  const range = runs > 1 ? ` (${seconds(summary.min[phase]).replace(' s', '')}–${seconds(summary.max[phase])})` : ''
  return `${seconds(summary.median[phase])}${range}`
}

const results: { process?: Summary, image?: Summary, imageBytes?: number, compressedBytes?: number } = {}
if (values.only !== 'image') {
  const samples: Sample[] = []
  for (let i = 0; i < runs; i++) samples.push(await processRun().catch((error: Error) => fail(`node dist/src/main.js: ${error.message}`)))
  results.process = summarize(samples)
}
if (values.only !== 'process') {
  if (values.build) await buildImage(values.image).catch((error: Error) => fail(error.message))
  if ((await docker(['image', 'inspect', values.image], { timeoutMs: 30_000 })).code !== 0) fail(`no image ${values.image} (build it, or add --build; DOCKER_HOST picks the daemon)`)
  results.imageBytes = await imageSize(values.image)
  if (values['pull-size']) results.compressedBytes = await compressedSize(values.image)
  const samples: Sample[] = []
  for (let i = 0; i < runs; i++) samples.push(await imageRun(values.image, i).catch((error: Error) => fail(`docker run ${values.image}: ${error.message}`)))
  results.image = summarize(samples)
}

const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(0)} MB`
console.log(`\n  cold start to /health/ready 200, median of ${runs} run${runs > 1 ? 's' : ''}${runs > 1 ? ' (min–max)' : ''}\n`)
console.log(`  ${''.padEnd(42)} ${'node dist/src/main.js'.padEnd(24)} docker run ${values.image}`)
for (const phase of PHASES) console.log(`  ${LABELS[phase].padEnd(42)} ${cell(results.process, phase).padEnd(24)} ${cell(results.image, phase)}`)
if (results.imageBytes !== undefined) {
  console.log(`\n  image ${values.image}: ${mb(results.imageBytes)}${results.compressedBytes === undefined ? '' : `, ${mb(results.compressedBytes)} gzip-compressed (what a pull transfers)`}`)
}
if (values.json !== undefined) await writeFile(values.json, `${JSON.stringify({ runs, image: values.image, ...results }, null, 2)}\n`)

function fail (message: string): never {
  console.error(`cold-start: ${message}`)
  process.exit(1)
}
