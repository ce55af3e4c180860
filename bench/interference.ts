import { setTimeout as sleep } from 'node:timers/promises'
import { machineCpuSeconds } from './cpu.js'

// On a shared machine other work (a test run, a build) takes cores from a measurement.
// The bench waits for a quiet moment before each one and repeats a disturbed one once.

/**
 * Waits (at most `maxWaitMs`) for a second in which the whole machine is nearly idle,
 * so a measurement does not start while other work (a test run, a build) holds the
 * cores. Resolves with the busy percentage last seen (of one core).
 */
export async function waitForQuiet (maxWaitMs: number, busyBelowPercent = 25): Promise<number> {
  const deadline = Date.now() + maxWaitMs
  let previous = machineCpuSeconds()
  let busy = Number.NaN
  while (previous !== undefined) {
    await sleep(1000)
    const now = machineCpuSeconds()
    if (now === undefined) break
    busy = (now - previous) * 100
    previous = now
    if (busy < busyBelowPercent || Date.now() > deadline) break
  }
  return busy
}

export interface CleanMeasurer {
  /** Measures after the machine settles; when `disturbance` (other processes' CPU, % of a core) is high, measures once more and keeps the less disturbed result. */
  cleanly: <T>(what: string, measure: () => Promise<T>, disturbance: (result: T) => number | undefined) => Promise<T>
  /** Waits (bounded) for other work on the machine to pause. */
  settle: () => Promise<void>
}

export interface CleanMeasurerOptions {
  /** How long to wait for a quiet second before each measurement; 0: do not wait. */
  readonly quietWaitMs: number
  /** Past this much CPU taken by other processes in a window, a measurement is repeated once. */
  readonly disturbedPercent: number
  /** No repeats once this returns false (keeps the bench within its time). */
  readonly mayRepeat: () => boolean
  readonly progress: (message: string) => void
}

export function cleanMeasurer (options: CleanMeasurerOptions): CleanMeasurer {
  const { progress } = options
  const settle = async (): Promise<void> => {
    if (options.quietWaitMs <= 0) return
    const busy = await waitForQuiet(options.quietWaitMs)
    if (busy >= 25) progress(`machine still busy (${busy.toFixed(0)}% of a core used by other processes); measuring anyway`)
  }
  const cleanly = async <T>(what: string, measure: () => Promise<T>, disturbance: (result: T) => number | undefined): Promise<T> => {
    await settle()
    progress(what)
    let result = await measure()
    const others = disturbance(result) ?? 0
    if (others > options.disturbedPercent && options.mayRepeat()) {
      progress(`${what}: other processes used ${others.toFixed(0)}% of a core meanwhile; measuring again`)
      await settle()
      const again = await measure()
      if ((disturbance(again) ?? 0) < others) result = again
    }
    return result
  }
  return { cleanly, settle }
}
