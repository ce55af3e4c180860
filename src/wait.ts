// The timer promises of the code base, in one place: each clears its timer when it
// settles early, so no stray timer keeps a draining process alive.

/** Resolves after `ms` (at once for 0 or less), or at once when `signal` aborts; never rejects. */
export function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0 || signal?.aborted === true) return Promise.resolve()
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal?.addEventListener('abort', done, { once: true })
  })
}

/** What `promise` resolves to, or undefined once `ms` have passed (at once for 0 or less), whichever comes first. */
export function withTimeout<T> (promise: Promise<T>, ms: number): Promise<T | undefined> {
  if (ms <= 0) return Promise.race([promise, Promise.resolve(undefined)])
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), ms) })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}
