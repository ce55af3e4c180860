import { bestOrt, microsPerRequest, scenarioOf, type Measured } from './measured.js'

// The targets of the hot-path issue (#17), each judged on this run's own figures. A
// target whose runs were left out (--only) is 'not measured', never met.

/** How the value must compare with the goal. */
export type Goal = '≥' | '≤' | '<'

export interface Target {
  readonly id: string
  /** A few words, for the chart. */
  readonly label: string
  readonly description: string
  /** Undefined where this run did not measure what the target needs. */
  readonly value: number | undefined
  readonly goal: Goal
  readonly target: number
  readonly unit: 'ratio' | 'ms' | 'µs'
  readonly status: 'met' | 'missed' | 'not measured'
}

export function formatTargetValue (unit: Target['unit'], value: number | undefined): string {
  if (value === undefined) return '–'
  if (unit === 'ms') return `${value.toFixed(1)} ms`
  if (unit === 'µs') return `${value.toFixed(1)} µs`
  return value.toFixed(2)
}

export function formatGoal (t: Target): string {
  return `${t.goal} ${t.unit === 'ratio' ? t.target : `${t.target} ${t.unit}`}`
}

function judge (fields: Omit<Target, 'status'>): Target {
  const { value, goal, target } = fields
  const met = value !== undefined && (goal === '≥' ? value >= target : goal === '≤' ? value <= target : value < target)
  return { ...fields, status: value === undefined || Number.isNaN(value) ? 'not measured' : met ? 'met' : 'missed' }
}

const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined || b === undefined || b === 0 ? undefined : a / b

export function buildTargets (measured: Measured, connections: number): Target[] {
  const echo = measured.echo.load
  const tinyRedis = scenarioOf(measured, 'tiny-json-redis')
  const tinyInProcess = scenarioOf(measured, 'tiny-json-in-process')
  const againstOrt = (scenarioId: string, model: string) => {
    const run = scenarioOf(measured, scenarioId)
    const ceiling = bestOrt(measured.ort, model)
    return {
      value: ratio(run?.load.requestsPerSecond, ceiling?.rowsPerSecond),
      ceiling: ceiling === undefined ? 'raw onnxruntime' : `raw onnxruntime batch ${ceiling.batch} (${ceiling.sessions} × ${ceiling.intraOpThreads} thread(s)), the better of batch 1 and 32`
    }
  }
  const mlp = againstOrt('mlp-binary-redis', 'mlp')
  const cnn = againstOrt('cnn-binary-redis', 'text_direction')
  const worstHealth = measured.scenarios.length === 0 ? undefined : measured.scenarios.reduce((a, b) => (b.health.p99Ms > a.health.p99Ms ? b : a))
  return [
    judge({ id: 'tiny-vs-echo', label: 'tiny + Redis ÷ echo (req/s)', description: 'tiny model, Redis journal, req/s ÷ Fastify echo req/s', value: ratio(tinyRedis?.load.requestsPerSecond, echo.requestsPerSecond), goal: '≥', target: 0.5, unit: 'ratio' }),
    judge({ id: 'tiny-p99-vs-echo', label: 'tiny + Redis p99 ÷ echo p99', description: `tiny model, Redis journal, p99 latency ÷ Fastify echo p99, ${connections} connections`, value: ratio(tinyRedis?.load.p99Ms, echo.p99Ms), goal: '≤', target: 2.5, unit: 'ratio' }),
    judge({ id: 'journal-redis-vs-in-process', label: 'Redis ÷ in-process journal (req/s)', description: 'tiny model, Redis journal req/s ÷ in-process journal req/s', value: ratio(tinyRedis?.load.requestsPerSecond, tinyInProcess?.load.requestsPerSecond), goal: '≥', target: 0.85, unit: 'ratio' }),
    judge({ id: 'mlp-binary-vs-ort', label: 'MLP binary ÷ best raw ORT (rows/s)', description: `MLP single-row binary, Redis journal, rows/s ÷ ${mlp.ceiling}`, value: mlp.value, goal: '≥', target: 0.5, unit: 'ratio' }),
    judge({ id: 'cnn-binary-vs-ort', label: 'PP-OCR cls binary ÷ best raw ORT', description: `PP-OCR text-direction CNN, single-image binary, Redis journal, images/s ÷ ${cnn.ceiling}`, value: cnn.value, goal: '≥', target: 0.5, unit: 'ratio' }),
    // Judged on the tiny model: its few bytes per request leave the journal's own cost per
    // request. Bigger payloads add copying and AOF writes in proportion (the CPU table shows each run).
    judge({ id: 'redis-cpu-per-request', label: 'redis-server CPU per request', description: 'redis-server CPU per answered request, tiny model, Redis journal', value: microsPerRequest(tinyRedis?.cpu['redis-server'], tinyRedis?.load.requestsPerSecond ?? 0), goal: '≤', target: 12, unit: 'µs' }),
    judge({ id: 'health-p99', label: '/health/ready p99 under load', description: `/health/ready p99 while saturated${worstHealth === undefined ? '' : ` (worst run: ${worstHealth.label})`}`, value: worstHealth?.health.p99Ms, goal: '<', target: 50, unit: 'ms' })
  ]
}
