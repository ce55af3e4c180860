// Every wait in the bench has an end, so a hung child or worker fails the run instead of stalling it.

/** Resolves or rejects as `promise` does, or rejects once `ms` have passed; `onTimeout` may clean up. */
export function withDeadline<T> (promise: Promise<T>, ms: number, what: string, onTimeout?: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      onTimeout?.()
      reject(new Error(`${what} did not finish within ${Math.round(ms / 1000)} s`))
    }, ms)
  })
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer))
}
