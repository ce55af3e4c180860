import type { ExecutionProvider } from './providers.js'
import type { ModelSignature, Tensor } from './signature.js'

// What a model instance (a worker thread or a child process) and the gateway say to
// each other, whatever carries it: postMessage for a thread, frames.ts for a process.

export interface InstanceInit {
  readonly path: string
  readonly providers: readonly ExecutionProvider[]
  readonly cudaDeviceId: number
  readonly intraOpThreads: number
}

export interface ProviderFallback {
  readonly provider: ExecutionProvider
  readonly reason: string
}

export type InstanceEvent =
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
