import { performance } from 'node:perf_hooks'
import ort from 'onnxruntime-node'
import { v2FromOrt, V2_TO_ORT, type NumericData } from './datatypes.js'
import type { InstanceEvent, InstanceInit, ProviderFallback, RunCommand } from './instance-protocol.js'
import { providerConfig, type ExecutionProvider } from './providers.js'
import type { ModelSignature, Tensor, TensorSpec } from './signature.js'

// One model instance's onnxruntime session, the same in a worker thread and in a child
// process: open it with the first execution provider that loads, then run commands.

// Provider load failures are reported through the gateway's log; onnxruntime's would repeat them per instance.
ort.env.logLevel = 'fatal'

keepFloat16AsUint16()

/**
 * Where the runtime has a Float16Array (Node 24 and later), onnxruntime-common turns the
 * Uint16Array data of a float16 tensor into one, and onnxruntime-node 1.30's binding then
 * reads it as zero bytes ("not enough space: expected 4, got 0"). onnxruntime-common picks
 * its float16 array type once, on the first tensor made: make that one with Float16Array
 * hidden, so float16 data stays the Uint16Array of bit patterns the binding reads.
 */
function keepFloat16AsUint16 (): void {
  const scope = globalThis as { Float16Array?: unknown }
  const saved = scope.Float16Array
  if (saved === undefined) return
  delete scope.Float16Array
  try {
    void new ort.Tensor('float16', new Uint16Array(1), [1])
  } finally {
    scope.Float16Array = saved
  }
}

export interface OpenSession {
  readonly session: ort.InferenceSession
  /** The `ready` event describing it. */
  readonly ready: Extract<InstanceEvent, { type: 'ready' }>
}

function tensorSpecOf (value: ort.InferenceSession.ValueMetadata, kind: string): TensorSpec {
  if (!value.isTensor) throw new Error(`${kind} '${value.name}' is not a tensor; only tensor inputs and outputs are supported`)
  const datatype = v2FromOrt(value.type)
  if (datatype === undefined) throw new Error(`${kind} '${value.name}' has element type ${value.type}, which onnxruntime-node cannot pass in or out`)
  const first = value.shape[0]
  return {
    name: value.name,
    datatype,
    shape: value.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1)),
    ...(typeof first === 'string' && { firstDimName: first })
  }
}

export function firstLine (error: unknown): string {
  return String((error as Error)?.message ?? error).split('\n')[0].slice(0, 500)
}

/** Opens the model with the first provider that loads it; throws naming every provider's failure. */
export async function openSession (init: InstanceInit): Promise<OpenSession> {
  const fallbacks: ProviderFallback[] = []
  for (const provider of init.providers) {
    let session: ort.InferenceSession
    try {
      session = await ort.InferenceSession.create(init.path, {
        executionProviders: [providerConfig(provider, { cudaDeviceId: init.cudaDeviceId })],
        intraOpNumThreads: init.intraOpThreads,
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all',
        // A provider that cannot load is reported once, in the gateway's log, not by onnxruntime per instance.
        logSeverityLevel: 4
      })
    } catch (error) {
      fallbacks.push({ provider, reason: firstLine(error) })
      continue
    }
    const signature: ModelSignature = {
      inputs: session.inputMetadata.map((m) => tensorSpecOf(m, 'input')),
      outputs: session.outputMetadata.map((m) => tensorSpecOf(m, 'output'))
    }
    return { session, ready: { type: 'ready', provider: provider as ExecutionProvider, fallbacks, signature } }
  }
  throw new Error(`no execution provider could load ${init.path}: ${fallbacks.map((f) => `${f.provider}: ${f.reason}`).join('; ')}`)
}

function toOrt (tensor: Tensor): ort.Tensor {
  return new ort.Tensor(V2_TO_ORT[tensor.datatype], tensor.data as never, tensor.shape as number[])
}

/** Runs one command; the event is the result or why it failed. */
export async function runCommand (session: ort.InferenceSession, command: RunCommand): Promise<Extract<InstanceEvent, { type: 'result' | 'run-failed' }>> {
  const started = performance.now()
  try {
    const feeds: Record<string, ort.Tensor> = {}
    for (const input of command.inputs) feeds[input.name] = toOrt(input)
    const names = command.outputs ?? session.outputNames
    const results = await session.run(feeds, names as string[])
    const outputs: Tensor[] = []
    for (const name of names) {
      const value = results[name]
      const datatype = v2FromOrt(value.type)
      if (datatype === undefined) throw new Error(`output '${name}' has unsupported element type ${value.type}`)
      // onnxruntime-node answers string tensors as an array of JS strings.
      outputs.push({ name, datatype, shape: [...value.dims], data: value.data as NumericData | string[] })
    }
    return { type: 'result', jobId: command.jobId, outputs, inferenceMs: performance.now() - started }
  } catch (error) {
    return { type: 'run-failed', jobId: command.jobId, message: firstLine(error) }
  }
}
