// One onnxruntime session on a thread of its own, run back to back: the compute
// ceiling the gateway's model instances could reach with nothing else to do.
import { parentPort, workerData } from 'node:worker_threads'
import { performance } from 'node:perf_hooks'
import ort from 'onnxruntime-node'

export interface OrtWorkerData {
  readonly path: string
  readonly input: string
  /** One row's shape, the batch dimension left out. */
  readonly rowShape: readonly number[]
  readonly batch: number
  readonly intraOpThreads: number
}

export type OrtWorkerMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'done', readonly runs: number, readonly elapsedMs: number }

const port = parentPort
if (port === null) throw new Error('ort-worker.ts must run as a worker thread')
const init = workerData as OrtWorkerData

const session = await ort.InferenceSession.create(init.path, {
  executionProviders: ['cpu'],
  intraOpNumThreads: init.intraOpThreads,
  interOpNumThreads: 1,
  graphOptimizationLevel: 'all'
})
const rowWidth = init.rowShape.reduce((a, b) => a * b, 1)
const data = new Float32Array(init.batch * rowWidth)
for (let i = 0; i < data.length; i++) data[i] = ((i * 7919) % 2000 - 1000) / 1000
const feeds = { [init.input]: new ort.Tensor('float32', data, [init.batch, ...init.rowShape]) }
for (let i = 0; i < 20; i++) await session.run(feeds)
port.postMessage({ type: 'ready' } satisfies OrtWorkerMessage)

port.once('message', async ({ durationMs }: { durationMs: number }) => {
  const started = performance.now()
  const until = started + durationMs
  let runs = 0
  while (performance.now() < until) {
    await session.run(feeds)
    runs++
  }
  port.postMessage({ type: 'done', runs, elapsedMs: performance.now() - started } satisfies OrtWorkerMessage)
  await session.release()
})
