import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { BenchRequest } from './bodies.js'
import { runLoad, type LoadResult } from './load.js'
import type { BenchModel } from './models.js'
import type { OrtWorkerData, OrtWorkerMessage } from './ort-worker.js'
import { watchCpu } from './cpu.js'
import { withDeadline } from './deadline.js'
import { freePort, startChild, waitFor200, watchResident } from './processes.js'

// What the machine can do with nothing of spotgate in the way: the HTTP ceiling (a
// bare Fastify echo route) and the compute ceiling (onnxruntime run back to back).

export interface LoadShape {
  readonly connections: number
  readonly warmupSeconds: number
  readonly durationSeconds: number
}

export interface EchoCeiling {
  readonly load: LoadResult
  readonly rssBytes: number | undefined
  /** Percent of one core the server and the load generator used in the measured window. */
  readonly cpu: Record<string, number>
}

const ECHO_SERVER = fileURLToPath(new URL('./echo-server.js', import.meta.url))
const ORT_WORKER = new URL('./ort-worker.js', import.meta.url)

/** A Fastify JSON echo route in a child process, under the same load as the gateway runs. */
export async function measureEcho (request: BenchRequest, shape: LoadShape): Promise<EchoCeiling> {
  const port = await freePort()
  const server = startChild(process.execPath, [ECHO_SERVER], { env: { ...process.env, PORT: String(port) } })
  try {
    await waitFor200(`http://127.0.0.1:${port}/ready`, server)
    const memory = watchResident(server.pid)
    const cpu = watchCpu()
    cpu.add('machine', 0)
    cpu.add('echo server', server.pid)
    const load = await runLoad({ url: `http://127.0.0.1:${port}/echo`, method: 'POST', body: request.body, headers: request.headers, ...shape }, { onStart: (pid) => cpu.add('load generator', pid) })
    cpu.stop()
    return { load, rssBytes: memory.stop(), cpu: cpu.usage(load.window) }
  } finally {
    await server.stop(2000)
  }
}

/** How the sessions share the cores: one single-threaded session per core, or one session using every core. */
export type OrtLayout = 'session-per-core' | 'one-session-all-cores'

export interface OrtCeiling {
  readonly model: string
  readonly batch: number
  readonly layout: OrtLayout
  readonly sessions: number
  readonly intraOpThreads: number
  readonly runsPerSecond: number
  readonly rowsPerSecond: number
  /** Mean time of one run on one session. */
  readonly msPerRun: number
  /** Percent of one core used by the machine and by this process while measuring. */
  readonly cpu: Record<string, number>
}

function startWorker (data: OrtWorkerData): Promise<Worker> {
  const worker = new Worker(ORT_WORKER, { workerData: data })
  return new Promise((resolve, reject) => {
    worker.once('error', reject)
    worker.once('message', (message: OrtWorkerMessage) => {
      worker.off('error', reject)
      if (message.type === 'ready') resolve(worker)
      else reject(new Error(`unexpected message ${message.type}`))
    })
  })
}

/** Raw onnxruntime-node in this process: every session runs `batch` rows back to back for `seconds`. */
export async function measureOrt (model: BenchModel, batch: number, layout: OrtLayout, seconds: number): Promise<OrtCeiling> {
  const cores = availableParallelism()
  const sessions = layout === 'session-per-core' ? cores : 1
  const intraOpThreads = layout === 'session-per-core' ? 1 : cores
  const workers = await Promise.all(Array.from({ length: sessions }, () =>
    withDeadline(startWorker({ path: model.path, input: model.input, rowShape: model.rowShape, batch, intraOpThreads }), 60_000, `onnxruntime session for ${model.name}`)))
  const exits = workers.map((worker) => exitOf(worker))
  const cpu = watchCpu()
  cpu.add('machine', 0)
  cpu.add('bench', process.pid)
  const startUs = Number(process.hrtime.bigint() / 1000n)
  try {
    const results = await withDeadline(Promise.all(workers.map((worker) => new Promise<{ runs: number, elapsedMs: number }>((resolve, reject) => {
      worker.once('error', reject)
      worker.once('message', (message: OrtWorkerMessage) => {
        if (message.type === 'done') resolve(message)
      })
      worker.postMessage({ durationMs: seconds * 1000 })
    }))), seconds * 1000 + 30_000, `onnxruntime ${model.name} batch ${batch}`)
    const runs = results.reduce((sum, r) => sum + r.runs, 0)
    const elapsedSeconds = Math.max(...results.map((r) => r.elapsedMs)) / 1000
    const msPerRun = results.reduce((sum, r) => sum + r.elapsedMs / r.runs, 0) / results.length
    cpu.stop()
    const usage = cpu.usage({ startUs, endUs: Number(process.hrtime.bigint() / 1000n) })
    return { model: model.name, batch, layout, sessions, intraOpThreads, runsPerSecond: runs / elapsedSeconds, rowsPerSecond: runs * batch / elapsedSeconds, msPerRun, cpu: usage }
  } finally {
    cpu.stop()
    // Each worker leaves on its own once its session is released: terminating a thread inside a run aborts the process.
    const timer = setTimeout(() => { for (const worker of workers) void worker.terminate() }, 10_000)
    await Promise.all(exits)
    clearTimeout(timer)
  }
}

function exitOf (worker: Worker): Promise<void> {
  return new Promise((resolve) => worker.once('exit', () => resolve()))
}

/** The better of the two layouts: the true ceiling for this model and batch size on this machine. */
export async function bestOrt (model: BenchModel, batch: number, seconds: number): Promise<{ best: OrtCeiling, all: OrtCeiling[] }> {
  const all = [await measureOrt(model, batch, 'session-per-core', seconds)]
  if (availableParallelism() > 1) all.push(await measureOrt(model, batch, 'one-session-all-cores', seconds))
  const best = all.reduce((a, b) => (b.rowsPerSecond > a.rowsPerSecond ? b : a))
  return { best, all }
}
