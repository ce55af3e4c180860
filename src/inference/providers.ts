import type { InferenceSession } from 'onnxruntime-node'

export const EXECUTION_PROVIDERS = ['cuda', 'cpu'] as const
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number]

export function isExecutionProvider (value: string): value is ExecutionProvider {
  return (EXECUTION_PROVIDERS as readonly string[]).includes(value)
}

export interface ProviderOptions {
  readonly cudaDeviceId: number
}

/** The onnxruntime session option for one provider; CUDA carries its device. */
export function providerConfig (provider: ExecutionProvider, options: ProviderOptions): InferenceSession.ExecutionProviderConfig {
  if (provider === 'cuda') return { name: 'cuda', deviceId: options.cudaDeviceId }
  return 'cpu'
}
