import type { ExecutionProvider } from './providers.js'
import type { ModelSignature, Tensor } from './signature.js'

// Messages between the main thread and a model instance's worker thread.

export interface WorkerInit {
  readonly path: string
  readonly providers: readonly ExecutionProvider[]
  readonly cudaDeviceId: number
  readonly intraOpThreads: number
  readonly warmup: boolean
}

export interface ProviderFallback {
  readonly provider: ExecutionProvider
  readonly reason: string
}

export type WorkerEvent =
  | { readonly type: 'ready', readonly provider: ExecutionProvider, readonly fallbacks: readonly ProviderFallback[], readonly signature: ModelSignature }
  | { readonly type: 'load-failed', readonly message: string }
  | { readonly type: 'result', readonly jobId: number, readonly outputs: readonly Tensor[], readonly inferenceMs: number }
  | { readonly type: 'run-failed', readonly jobId: number, readonly message: string }

export interface RunCommand {
  readonly type: 'run'
  readonly jobId: number
  readonly inputs: readonly Tensor[]
  /** Restrict the run to these outputs; all when absent. */
  readonly outputs?: readonly string[]
}
