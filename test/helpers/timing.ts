import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import ort from 'onnxruntime-node'
import { SPIN_WIDTH, writeSpin } from '../../scripts/models/catalog.js'

// How fast this machine is right now, measured when a test file starts, so that no test
// depends on the speed of the machine it was written on: model run times are chosen in
// milliseconds of this machine, and time bounds stretch with its slowness.

/**
 * Milliseconds 1000 iterations of the spin model take on this machine, measured when a
 * test file first asks: one onnxruntime session with one intra-op thread, as a model
 * instance runs it, the fastest of three runs of about 100 ms.
 */
async function calibrateSpin (): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'spotgate-spin-calibration-'))
  try {
    const session = await ort.InferenceSession.create(await writeSpin(dir), { intraOpNumThreads: 1, interOpNumThreads: 1 })
    const x = new ort.Tensor('float32', new Float32Array(SPIN_WIDTH), [1, SPIN_WIDTH])
    const time = async (iterations: number): Promise<number> => {
      const started = performance.now()
      await session.run({ iterations: new ort.Tensor('int64', BigInt64Array.of(BigInt(iterations)), [1]), x })
      return performance.now() - started
    }
    await time(100)
    let iterations = 5000
    const ms = await time(iterations)
    if (ms < 100) iterations = Math.ceil(iterations * 100 / Math.max(ms, 1))
    const runs = [await time(iterations), await time(iterations), await time(iterations)]
    await session.release()
    return Math.min(...runs) / iterations * 1000
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** Milliseconds per 1000 spin iterations on this machine, measured once per test process. */
export const SPIN_MS_PER_1000 = await calibrateSpin()

/** The same figure on the 2-core machine where the suite's time bounds were first set. */
const REFERENCE_SPIN_MS_PER_1000 = 3.9

/** How many times slower than that machine this one is now (never below 1). */
export const SLOWDOWN = Math.max(1, SPIN_MS_PER_1000 / REFERENCE_SPIN_MS_PER_1000)

/**
 * A time bound in milliseconds, stretched by this machine's measured slowness: a
 * bound that holds with margin on a fast machine holds on a slow or busy one too.
 */
export function allow (ms: number): number {
  return ms * SLOWDOWN
}
