import { SPIN_WIDTH } from '../../scripts/models/catalog.js'
import { SPIN_MS_PER_1000 } from './timing.js'

// Request bodies for the catalog's test models, in v2 JSON form.

export interface V2Tensor {
  name: string
  datatype: string
  shape: number[]
  data: unknown[]
}

export function tensor (name: string, datatype: string, shape: number[], data: unknown[]): V2Tensor {
  return { name, datatype, shape, data }
}

/** classifier: `input` FP32 [rows, 4]. */
export function classifierBody (rows = 1, extra: Record<string, unknown> = {}) {
  const data = Array.from({ length: rows * 4 }, (_, i) => (i % 7) / 4 - 0.5)
  return { ...extra, inputs: [tensor('input', 'FP32', [rows, 4], data)] }
}

/** tabular: `features` FP32 [rows, 3] and `category` INT64 [rows, 1]. */
export function tabularBody (features: number[][], categories: Array<number | string>, extra: Record<string, unknown> = {}) {
  return {
    ...extra,
    inputs: [
      tensor('features', 'FP32', [features.length, 3], features.flat()),
      tensor('category', 'INT64', [categories.length, 1], categories)
    ]
  }
}

/** The score the tabular model computes: f0 + 2·f1 + 3·f2 + 0.5·category. */
export function tabularScore ([f0, f1, f2]: number[], category: number): number {
  return f0 + 2 * f1 + 3 * f2 + 0.5 * category
}

/** Iterations that keep one spin run busy for about `ms` on this machine, as measured when the test file started. */
export function spinIterations (ms: number): number {
  return Math.max(1, Math.round(ms / SPIN_MS_PER_1000 * 1000))
}

/** spin: `iterations` INT64 [1] and `x` FP32 [1, 64]. */
export function spinBody (iterations: number, extra: Record<string, unknown> = {}) {
  return {
    ...extra,
    inputs: [
      tensor('iterations', 'INT64', [1], [iterations]),
      tensor('x', 'FP32', [1, SPIN_WIDTH], new Array(SPIN_WIDTH).fill(0.25))
    ]
  }
}
