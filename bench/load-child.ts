// A load generator in a process of its own, so the client's event loop never shares a
// thread with the bench's other probes. Reads a LoadSpec as JSON on stdin, writes a
// line on stdout when the measured window starts, then the LoadResult as JSON.
import { setTimeout as sleep } from 'node:timers/promises'
import autocannon from 'autocannon'
import { summarise, type LoadResult, type LoadSpec } from './load.js'

async function readStdin (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

function fire (spec: LoadSpec, body: Buffer | undefined, seconds: number, latencies: number[] | undefined) {
  const options: autocannon.Options = {
    url: spec.url,
    method: spec.method,
    connections: spec.connections,
    duration: seconds,
    headers: spec.headers,
    ...(body !== undefined && { body }),
    ...(spec.ratePerSecond !== undefined && { overallRate: spec.ratePerSecond }),
    timeout: 10
  }
  const instance = autocannon(options) as unknown as Running
  // autocannon's own histogram keeps whole milliseconds; the raw response times are finer.
  if (latencies !== undefined) {
    instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime)
    })
  }
  return instance
}

/** What autocannon returns without a callback: its tracker, which is also a promise of the result. */
type Running = Promise<autocannon.Result> & {
  on: (event: 'response', listener: (client: unknown, statusCode: number, bytes: number, responseTime: number) => void) => void
}

const spec = JSON.parse(await readStdin()) as LoadSpec
const body = spec.bodyBase64 === undefined ? undefined : Buffer.from(spec.bodyBase64, 'base64')
if (spec.delayMs > 0) await sleep(spec.delayMs)
if (spec.warmupSeconds > 0) await fire(spec, body, spec.warmupSeconds, undefined)
const latencies: number[] = []
// The monotonic clock --cpu-prof stamps its samples with, so a profile can be cut to this window.
const started = process.hrtime.bigint()
process.stdout.write(`${JSON.stringify({ event: 'window-start' })}\n`)
const result = await fire(spec, body, spec.durationSeconds, latencies)
const ended = process.hrtime.bigint()
const elapsedSeconds = Number(ended - started) / 1e9
const statusCounts: Record<string, number> = {}
for (const [code, { count }] of Object.entries(result.statusCodeStats ?? {})) statusCounts[code] = count ?? 0
const out: LoadResult = summarise({
  ok: result['2xx'],
  non2xx: result.non2xx,
  errors: result.errors,
  timeouts: result.timeouts,
  statusCounts,
  elapsedSeconds,
  window: { startUs: Number(started / 1000n), endUs: Number(ended / 1000n) },
  latencies
})
process.stdout.write(`${JSON.stringify(out)}\n`)
