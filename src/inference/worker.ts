import { parentPort, workerData } from 'node:worker_threads'
import { performance } from 'node:perf_hooks'
import ort from 'onnxruntime-node'
import { allocate, v2FromOrt, V2_TO_ORT, type TensorData } from './datatypes.js'
import { providerConfig, type ExecutionProvider } from './providers.js'
import type { ModelSignature, Tensor, TensorSpec } from './signature.js'
import type { ProviderFallback, RunCommand, WorkerEvent, WorkerInit } from './worker-protocol.js'

// One model instance: an onnxruntime session that lives on this thread, so its
// synchronous run() never blocks the server's event loop.

const port = parentPort
if (port === null) throw new Error('worker.ts must run as a worker thread')
const init = workerData as WorkerInit
// Provider load failures are reported through our own log; onnxruntime's would repeat them per instance.
ort.env.logLevel = 'fatal'

function post (event: WorkerEvent, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(event, transfer)
}

function describe (value: ort.InferenceSession.ValueMetadata, kind: string): TensorSpec {
  if (!value.isTensor) throw new Error(`${kind} '${value.name}' is not a tensor; only tensor inputs and outputs are supported`)
  const datatype = v2FromOrt(value.type)
  if (datatype === undefined) throw new Error(`${kind} '${value.name}' has element type ${value.type}, which spotgate does not serve`)
  return { name: value.name, datatype, shape: value.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1)) }
}

async function open (): Promise<{ session: ort.InferenceSession, provider: ExecutionProvider, fallbacks: ProviderFallback[] }> {
  const fallbacks: ProviderFallback[] = []
  for (const provider of init.providers) {
    try {
      const session = await ort.InferenceSession.create(init.path, {
        executionProviders: [providerConfig(provider, { cudaDeviceId: init.cudaDeviceId })],
        intraOpNumThreads: init.intraOpThreads,
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all'
      })
      return { session, provider, fallbacks }
    } catch (error) {
      fallbacks.push({ provider, reason: firstLine(error) })
    }
  }
  throw new Error(`no execution provider could load ${init.path}: ${fallbacks.map((f) => `${f.provider}: ${f.reason}`).join('; ')}`)
}

function firstLine (error: unknown): string {
  return String((error as Error)?.message ?? error).split('\n')[0].slice(0, 500)
}

function toOrt (tensor: Tensor): ort.Tensor {
  return new ort.Tensor(V2_TO_ORT[tensor.datatype], tensor.data as never, tensor.shape as number[])
}

async function warmUp (session: ort.InferenceSession, signature: ModelSignature): Promise<void> {
  const feeds: Record<string, ort.Tensor> = {}
  for (const spec of signature.inputs) {
    const shape = spec.shape.map((d) => (d === -1 ? 1 : d))
    const size = shape.reduce((a, b) => a * b, 1)
    feeds[spec.name] = toOrt({ ...spec, shape, data: allocate(spec.datatype, size) })
  }
  await session.run(feeds)
}

/** Output data that can be moved to the main thread without a copy. */
function ownedData (data: TensorData): TensorData {
  const whole = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer
  return whole ? data : data.slice()
}

async function main (): Promise<void> {
  let opened: Awaited<ReturnType<typeof open>>
  let signature: ModelSignature
  try {
    opened = await open()
    signature = {
      inputs: opened.session.inputMetadata.map((m) => describe(m, 'input')),
      outputs: opened.session.outputMetadata.map((m) => describe(m, 'output'))
    }
    if (init.warmup) await warmUp(opened.session, signature)
  } catch (error) {
    post({ type: 'load-failed', message: firstLine(error) })
    return
  }
  const { session } = opened
  post({ type: 'ready', provider: opened.provider, fallbacks: opened.fallbacks, signature })

  port!.on('message', async (command: RunCommand) => {
    const started = performance.now()
    try {
      const feeds: Record<string, ort.Tensor> = {}
      for (const input of command.inputs) feeds[input.name] = toOrt(input)
      const names = command.outputs ?? session.outputNames
      const results = await session.run(feeds, names as string[])
      const outputs: Tensor[] = []
      const transfer: ArrayBuffer[] = []
      for (const name of names) {
        const value = results[name]
        const datatype = v2FromOrt(value.type)
        if (datatype === undefined) throw new Error(`output '${name}' has unsupported element type ${value.type}`)
        const data = ownedData(value.data as TensorData)
        outputs.push({ name, datatype, shape: [...value.dims], data })
        transfer.push(data.buffer as ArrayBuffer)
      }
      post({ type: 'result', jobId: command.jobId, outputs, inferenceMs: performance.now() - started }, transfer)
    } catch (error) {
      post({ type: 'run-failed', jobId: command.jobId, message: firstLine(error) })
    }
  })
}

await main()
