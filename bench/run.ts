// npm run bench: measures the ceilings and spotgate end to end in one run on this
// machine, prints the tables, writes bench/results/latest.json and docs/bench/latest.{json,md}
// and draws docs/bench/latest.svg (a run with --only: bench/results/partial.{json,md,svg}). `npm run bench -- --profile` adds two gateway runs
// under --cpu-prof and summarises where their threads spent CPU. Other options:
// --duration/--warmup (s), --connections, --ort-seconds, --health-rate (probes/s),
// --quiet-wait (s to wait for other work to pause), --env KEY=VALUE (gateway, repeatable),
// --only ID,ID (some spotgate runs, and only the ceilings they are compared with).
import { execFileSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises'
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { jsonRequest } from './bodies.js'
import { bestOrt, measureEcho, type LoadShape, type OrtCeiling } from './ceilings.js'
import { renderChart } from './chart.js'
import { measureScenario, type ScenarioResult } from './end-to-end.js'
import { writeBenchModels } from './models.js'
import { summariseProfiles } from './profile.js'
import { othersPercent } from './cpu.js'
import { cleanMeasurer } from './interference.js'
import { REDIS_SETTINGS } from './redis.js'
import { buildRows, formatBatching, formatBreakdown, formatCpu, formatCpuPerRequest, formatHeader, formatJournalCost, formatMarkdown, formatProfiles, formatTable, formatTargets, writeJson, type BenchReport, type ProfiledRun } from './report.js'
import { benchScenarios, modelsOf, selectScenarios } from './scenarios.js'
import { buildTargets } from './targets.js'

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)))

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '2' },
    connections: { type: 'string', default: '64' },
    'ort-seconds': { type: 'string', default: '2' },
    'health-rate': { type: 'string', default: '50' },
    profile: { type: 'boolean', default: false },
    'quiet-wait': { type: 'string', default: '10' },
    /** KEY=VALUE for every gateway run (repeatable), e.g. --env MODEL_INSTANCES=1. */
    env: { type: 'string', multiple: true, default: [] },
    /** Comma-separated scenario ids; the echo route is always measured (the targets compare with it). */
    only: { type: 'string', default: '' }
  }
})
const only = args.only.split(',').map((id) => id.trim()).filter(Boolean)

const shape: LoadShape = { connections: Number(args.connections), warmupSeconds: Number(args.warmup), durationSeconds: Number(args.duration) }
const ortSeconds = Number(args['ort-seconds'])
const healthRate = Number(args['health-rate'])
const started = Date.now()
const progress = (message: string): void => { process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(3)} s] ${message}\n`) }
const quietWaitMs = Number(args['quiet-wait']) * 1000
const gatewayEnv: Record<string, string> = {}
for (const pair of args.env) {
  const at = pair.indexOf('=')
  if (at < 1) throw new Error(`--env takes KEY=VALUE, got ${pair}`)
  gatewayEnv[pair.slice(0, at)] = pair.slice(at + 1)
}

const { cleanly, settle } = cleanMeasurer({
  quietWaitMs,
  disturbedPercent: 30,
  // No repeats after two and a half minutes, so the bench stays within a few minutes.
  mayRepeat: () => Date.now() - started < 150_000,
  progress
})

function versionOf (command: string, commandArgs: string[]): string {
  try {
    return execFileSync(command, commandArgs, { encoding: 'utf8' }).trim()
  } catch {
    return 'unknown'
  }
}

const loadAtStart = loadavg()[0]
if (loadAtStart > availableParallelism() / 2) {
  progress(`warning: load average ${loadAtStart.toFixed(1)} on ${availableParallelism()} cores; other processes will take CPU from every measurement (see "other processes" in the CPU table)`)
}

const scratch = await mkdtemp(join(tmpdir(), 'spotgate-bench-'))
try {
  const models = await writeBenchModels(join(scratch, 'models'))
  const scenarios = selectScenarios(benchScenarios(models), only)

  const echo = await cleanly(`HTTP ceiling: Fastify JSON echo, ${shape.connections} connections, ${shape.warmupSeconds} s warm-up + ${shape.durationSeconds} s`,
    () => measureEcho(jsonRequest(models.tiny), shape), (r) => othersPercent(r.cpu, ['echo server', 'load generator']))

  const ort: OrtCeiling[] = []
  for (const model of modelsOf(scenarios)) {
    for (const batch of [1, 32]) {
      const measured = await cleanly(`compute ceiling: onnxruntime ${model.name} batch ${batch}`,
        () => bestOrt(model, batch, ortSeconds), (r) => Math.max(...r.all.map((o) => othersPercent(o.cpu, ['bench']) ?? 0)))
      ort.push(...measured.all)
    }
  }

  const results: ScenarioResult[] = []
  for (const scenario of scenarios) {
    results.push(await cleanly(`spotgate: ${scenario.label}`, () => measureScenario(scenario, { shape, healthRate, env: gatewayEnv }),
      (r) => othersPercent(r.cpu, ['gateway', 'redis-server', 'load generator'])))
  }

  // The tiny run shows the HTTP and journal path; the MLP binary run the hand-off to the model instances.
  const profiles: ProfiledRun[] = []
  if (args.profile) {
    for (const scenario of scenarios.filter((s) => s.id === 'tiny-json-redis' || s.id === 'mlp-binary-redis')) {
      const dir = join(scratch, `profile-${scenario.id}`)
      await settle()
      progress(`profile: ${scenario.label} with --cpu-prof`)
      const profiled = await measureScenario(scenario, { shape, healthRate, env: gatewayEnv, nodeArgs: ['--cpu-prof', '--cpu-prof-dir', dir] })
      // Only the measured window: start-up, model loading, warm-up and the drain are left out.
      profiles.push({ scenario: scenario.id, label: scenario.label, requestsPerSecond: profiled.load.requestsPerSecond, p99Ms: profiled.load.p99Ms, threads: await summariseProfiles(dir, 15, profiled.load.window) })
    }
  }

  const onnxruntime = (JSON.parse(await readFile(join(ROOT, 'node_modules/onnxruntime-node/package.json'), 'utf8')) as { version: string }).version
  const measured = { echo, ort, scenarios: results }
  const report: BenchReport = {
    date: new Date().toISOString(),
    machine: {
      cpus: availableParallelism(),
      cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
      memoryBytes: totalmem(),
      node: process.version,
      loadAverageAtStart: loadAtStart,
      onnxruntime,
      redis: versionOf('redis-server', ['--version']).replace(/^Redis server v=/, '').split(' ')[0]
    },
    load: { ...shape, healthProbeRate: healthRate, redisSettings: [...REDIS_SETTINGS], gatewayEnv },
    ...(only.length > 0 && { only }),
    rows: buildRows(measured, models.tiny.name),
    targets: buildTargets(measured, shape.connections),
    ...measured,
    ...(profiles.length > 0 && { profiles })
  }

  console.log(`\n${formatHeader(report)}\n`)
  console.log(formatTable(report))
  console.log(`\n${formatTargets(report)}`)
  console.log(`\n${formatCpu(report)}`)
  console.log(`\n${formatCpuPerRequest(report)}`)
  const journalCost = formatJournalCost(report)
  if (journalCost !== undefined) console.log(`\n${journalCost}`)
  console.log(`\n${formatBatching(report)}`)
  console.log(`\n${formatBreakdown(report)}`)
  if (profiles.length > 0) console.log(`\n${formatProfiles(report)}`)

  // A partial run leaves the published figures alone.
  const files = only.length > 0
    ? { json: ['bench/results/partial.json'], md: 'bench/results/partial.md', svg: 'bench/results/partial.svg' }
    : { json: ['bench/results/latest.json', 'docs/bench/latest.json'], md: 'docs/bench/latest.md', svg: 'docs/bench/latest.svg' }
  for (const path of files.json) await writeJson(join(ROOT, path), report)
  await mkdir(dirname(join(ROOT, files.md)), { recursive: true })
  await writeFile(join(ROOT, files.md), formatMarkdown(report))
  await writeFile(join(ROOT, files.svg), renderChart(report))
  console.log(`\nwrote ${[...files.json, files.md, files.svg].join(', ')}`)
  progress('done')
} finally {
  await rm(scratch, { recursive: true, force: true })
}
