import { SPIN_MS_PER_1000_ITERATIONS, SPIN_WIDTH } from '../models/catalog.js'

// The requests of a chaos run, and how to tell a right answer from a wrong one.
// tabular's score is exact arithmetic on small integers (every value is exact in FP32);
// spin's output is compared with a reference run of the same input taken at start-up.

export interface WorkItem {
  readonly model: 'tabular' | 'spin'
  /** The v2 JSON body; its `id` is the Idempotency-Key, so a swapped answer shows. */
  readonly body: Record<string, unknown>
  /** The output data a correct answer carries. */
  readonly expected: readonly number[]
  /** For spin: which reference it is compared with. */
  readonly variant?: string
}

/** spin run lengths, in milliseconds on the reference machine, and starting values of x. */
export const SPIN_MS = [50, 150, 400] as const
export const SPIN_X = [0.25, -0.5] as const

export interface SpinVariant {
  readonly key: string
  readonly iterations: number
  readonly x: number
}

export function spinVariants (): SpinVariant[] {
  return SPIN_MS.flatMap((ms) => SPIN_X.map((x) => ({ key: `${ms}ms/x=${x}`, iterations: Math.round(ms / SPIN_MS_PER_1000_ITERATIONS * 1000), x })))
}

export function spinBody (variant: SpinVariant, id: string): Record<string, unknown> {
  return {
    id,
    inputs: [
      { name: 'iterations', datatype: 'INT64', shape: [1], data: [variant.iterations] },
      { name: 'x', datatype: 'FP32', shape: [1, SPIN_WIDTH], data: new Array(SPIN_WIDTH).fill(variant.x) }
    ]
  }
}

/**
 * A generator of work items: `spinShare` of them spin (a random variant), the rest
 * tabular with 1-3 rows of random small integers.
 */
export function workload (random: () => number, references: ReadonlyMap<string, readonly number[]>, spinShare: number) {
  const variants = spinVariants()
  const int = (low: number, high: number): number => low + Math.floor(random() * (high - low + 1))
  return (id: string): WorkItem => {
    if (random() < spinShare) {
      const variant = variants[int(0, variants.length - 1)]
      const expected = references.get(variant.key)
      if (expected === undefined) throw new Error(`no reference output for spin ${variant.key}`)
      return { model: 'spin', body: spinBody(variant, id), expected, variant: variant.key }
    }
    const rows = int(1, 3)
    const features: number[] = []
    const categories: number[] = []
    const expected: number[] = []
    for (let row = 0; row < rows; row++) {
      const f = [int(-8, 8), int(-8, 8), int(-8, 8)]
      const category = int(0, 9)
      features.push(...f)
      categories.push(category)
      expected.push(f[0] + 2 * f[1] + 3 * f[2] + 0.5 * category)
    }
    return {
      model: 'tabular',
      body: {
        id,
        inputs: [
          { name: 'features', datatype: 'FP32', shape: [rows, 3], data: features },
          { name: 'category', datatype: 'INT64', shape: [rows, 1], data: categories }
        ]
      },
      expected
    }
  }
}

/** Why a 200 body is not the right answer to `item` (sent as `id`), or undefined when it is. */
export function checkAnswer (item: WorkItem, id: string, text: string): string | undefined {
  let body: { id?: unknown, model_name?: unknown, outputs?: Array<{ data?: unknown }> }
  try {
    body = JSON.parse(text)
  } catch {
    return `not JSON: ${text.slice(0, 120)}`
  }
  if (body.id !== id) return `answer echoes id ${JSON.stringify(body.id)}, expected ${JSON.stringify(id)}`
  if (body.model_name !== item.model) return `answer is from model ${JSON.stringify(body.model_name)}`
  const data = body.outputs?.[0]?.data
  if (!Array.isArray(data)) return `no output data: ${text.slice(0, 120)}`
  if (data.length !== item.expected.length) return `output has ${data.length} values, expected ${item.expected.length}`
  for (let i = 0; i < data.length; i++) {
    if (data[i] !== item.expected[i]) return `output[${i}] = ${String(data[i])}, expected ${item.expected[i]}`
  }
  return undefined
}
