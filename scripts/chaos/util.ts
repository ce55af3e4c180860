/** Resolves after `ms`, or at once when `signal` aborts (never rejects, so loops just check `signal.aborted`). */
export function pause (ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted === true || ms <= 0) return Promise.resolve()
  return new Promise((resolve) => {
    const done = (): void => { clearTimeout(timer); signal?.removeEventListener('abort', done); resolve() }
    const timer = setTimeout(done, ms)
    signal?.addEventListener('abort', done, { once: true })
  })
}

/** A seeded generator, so a run's workload and chaos schedule can be repeated with --seed. */
export { mulberry32 as seededRandom } from '../models/onnx-builder.js'

export function percentile (sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]
}
