// Batch input files with known answers, and the exactly-once check of a finished batch's
// output and error files: shared by the tests and the chaos harness.

export interface ExpectedLine {
  readonly customId: string
  /** The tabular model's exact score for the line, or undefined for lines that are not tabular. */
  readonly score?: number
  /** The whole first output the line must get (a reference run of the same input). */
  readonly output?: readonly number[]
}

/** The score the tabular model computes: f0 + 2·f1 + 3·f2 + 0.5·category (exact in FP32 for these small values). */
function tabularScore ([f0, f1, f2]: number[], category: number): number {
  return f0 + 2 * f1 + 3 * f2 + 0.5 * category
}

/** `count` lines for the tabular model at `url`, each with a score that identifies it. */
export function tabularBatch (count: number, url = '/v2/models/tabular/infer', prefix = 'line'): { jsonl: string, expected: ExpectedLine[] } {
  const expected: ExpectedLine[] = []
  const lines: string[] = []
  for (let i = 0; i < count; i++) {
    const features = [i % 1000, Math.floor(i / 1000), 0.25]
    const category = i % 4
    const customId = `${prefix}-${i}`
    expected.push({ customId, score: tabularScore(features, category) })
    lines.push(JSON.stringify({
      custom_id: customId,
      method: 'POST',
      url,
      body: { inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 3], data: features }, { name: 'category', datatype: 'INT64', shape: [1, 1], data: [category] }] }
    }))
  }
  return { jsonl: `${lines.join('\n')}\n`, expected }
}

/** `count` lines of the same v2 `body` for `url`, each expected to get `output`. */
export function repeatedBatch (count: number, url: string, body: unknown, output: readonly number[], prefix: string): { jsonl: string, expected: ExpectedLine[] } {
  const expected = Array.from({ length: count }, (_, i) => ({ customId: `${prefix}-${i}`, output }))
  const jsonl = expected.map((line) => JSON.stringify({ custom_id: line.customId, method: 'POST', url, body })).join('\n') + '\n'
  return { jsonl, expected }
}

export interface OutputLine {
  readonly id: string
  readonly custom_id: string
  readonly response: { status_code: number, request_id: string, body: { outputs?: Array<{ data: number[] }>, error?: string } } | null
  readonly error: { code: string, message: string } | null
}

export interface BatchCheck {
  /** Input lines with no line in either file. */
  readonly lost: string[]
  /** Input lines with more than one line across the files. */
  readonly duplicated: string[]
  /** Output lines whose answer is not the expected one. */
  readonly wrong: string[]
  /** Lines whose custom_id is no input line's. */
  readonly unknown: string[]
  readonly answered: number
  readonly errors: OutputLine[]
  /** custom_ids in the order the output file lists them. */
  readonly outputOrder: string[]
}

export function parseJsonl (text: string): OutputLine[] {
  return text.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as OutputLine)
}

/** Every input line must appear exactly once across both files; output answers must be the expected ones. */
export function checkBatch (expected: readonly ExpectedLine[], outputText: string, errorText: string): BatchCheck {
  const byId = new Map(expected.map((line) => [line.customId, line]))
  const seen = new Map<string, number>()
  const wrong: string[] = []
  const unknown: string[] = []
  const output = parseJsonl(outputText)
  const errors = parseJsonl(errorText)
  for (const line of [...output, ...errors]) {
    if (!byId.has(line.custom_id)) unknown.push(line.custom_id)
    seen.set(line.custom_id, (seen.get(line.custom_id) ?? 0) + 1)
  }
  for (const line of output) {
    const want = byId.get(line.custom_id)
    const data = line.response?.body.outputs?.[0]?.data
    const scoreWrong = want?.score !== undefined && data?.[0] !== want.score
    const outputWrong = want?.output !== undefined && JSON.stringify(data) !== JSON.stringify(want.output)
    if (line.response?.status_code !== 200 || line.error !== null || scoreWrong || outputWrong) wrong.push(line.custom_id)
  }
  return {
    lost: expected.filter((line) => !seen.has(line.customId)).map((line) => line.customId),
    duplicated: [...seen].filter(([, count]) => count > 1).map(([id]) => id),
    wrong,
    unknown,
    answered: output.length,
    errors,
    outputOrder: output.map((line) => line.custom_id)
  }
}
