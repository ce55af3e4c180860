import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Cleanup } from './app.js'
import { GatewayProcess } from './gateway-process.js'
import { RedisServer } from './redis-server.js'

// Real fleets for the fleet-*.test.ts files: one redis-server per file, gateways that
// share a journal namespace per test, and the few metric and polling helpers they need.

/** A redis-server for the whole test file, stopped when `after` runs. */
export async function startRedis (after: (fn: () => Promise<void>) => void): Promise<RedisServer> {
  const redis = await RedisServer.start()
  after(() => redis.stop())
  return redis
}

export interface FleetSettings {
  readonly redis: RedisServer
  /** The journal namespace shared by the instances of one test. */
  readonly namespace: string
  readonly modelRepository: string
  readonly leaseTtlMs: number
  /** Extra environment, over the fleet defaults. */
  readonly env?: Record<string, string>
}

export function namespace (): string {
  return `t-${randomUUID().slice(0, 8)}`
}

/** Starts `count` gateways of one fleet in parallel and waits until all are ready. */
export async function startFleet (t: Cleanup, count: number, settings: FleetSettings, names: readonly string[] = []): Promise<GatewayProcess[]> {
  const gateways = await Promise.all(Array.from({ length: count }, (_, index) => startInstance(t, settings, names[index] ?? `i${index + 1}`)))
  await Promise.all(gateways.map((g) => g.waitReady(30_000)))
  return gateways
}

export function startInstance (t: Cleanup, settings: FleetSettings, name: string): Promise<GatewayProcess> {
  return GatewayProcess.start(t, {
    env: {
      REDIS_URL: settings.redis.url,
      JOURNAL_NAMESPACE: settings.namespace,
      INSTANCE_ID: `${settings.namespace}-${name}`,
      MODEL_REPOSITORY: settings.modelRepository,
      LEASE_TTL_MS: String(settings.leaseTtlMs),
      DRAIN_SAFETY_MARGIN_MS: '0',
      IDEMPOTENCY_WAIT_MS: '1000',
      ...settings.env
    }
  })
}

/** The value of one sample of `/metrics` (0 when absent), e.g. `spotgate_replays_total{outcome="done"}`. */
export async function metric (gateway: GatewayProcess, sample: string): Promise<number> {
  const text = await (await gateway.fetch('/metrics')).text()
  for (const line of text.split('\n')) {
    if (line.startsWith(`${sample} `)) return Number(line.slice(sample.length + 1))
  }
  return 0
}

export async function metricSum (gateways: readonly GatewayProcess[], sample: string): Promise<number> {
  const values = await Promise.all(gateways.map((g) => metric(g, sample)))
  return values.reduce((a, b) => a + b, 0)
}

/** Polls /metrics until `model` has at least `count` requests in flight. */
export async function waitInflight (gateway: GatewayProcess, model: string, count = 1, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await metric(gateway, `spotgate_inflight_requests{model="${model}"}`) >= count) return
    await sleep(20)
  }
  throw new Error(`fewer than ${count} ${model} requests in flight within ${timeoutMs} ms\n${gateway.tail()}`)
}

export interface Answer {
  readonly status: number
  readonly text: string
  readonly at: number
  /** The pending statuses (202 bodies) seen on the way, in order of first sight. */
  readonly states: string[]
}

/**
 * Polls GET /infer/{id} round-robin over `gateways` until an answer other than 202.
 * `waitMs` is the long-poll bound of each call (0: plain polling every `everyMs`).
 */
export async function pollAnswer (gateways: readonly GatewayProcess[], id: string, options: { timeoutMs: number, waitMs?: number, everyMs?: number }): Promise<Answer> {
  const deadline = Date.now() + options.timeoutMs
  const states: string[] = []
  const waitMs = options.waitMs ?? 1000
  let turn = 0
  while (Date.now() < deadline) {
    const gateway = gateways[turn++ % gateways.length]
    try {
      const response = await gateway.fetch(`/infer/${encodeURIComponent(id)}?wait=${waitMs}`, { signal: AbortSignal.timeout(waitMs + 5000) })
      const text = await response.text()
      if (response.status !== 202) return { status: response.status, text, at: Date.now(), states }
      const state = String((JSON.parse(text) as { status?: unknown }).status)
      if (!states.includes(state)) states.push(state)
    } catch {}
    if (waitMs === 0) await sleep(options.everyMs ?? 25)
  }
  throw new Error(`no answer for ${id} within ${options.timeoutMs} ms (states seen: ${states.join(' → ') || 'none'})\n${gateways.map((g) => g.tail(8)).join('\n---\n')}`)
}

/** Sum of `spotgate_inference_duration_seconds_sum{model,...}` on a gateway: the time its runs took. */
export async function inferenceSeconds (gateway: GatewayProcess, model: string): Promise<number> {
  const text = await (await gateway.fetch('/metrics')).text()
  let total = 0
  for (const line of text.split('\n')) {
    if (line.startsWith('spotgate_inference_duration_seconds_sum{') && line.includes(`model="${model}"`)) total += Number(line.split(' ').at(-1))
  }
  return total
}

/** Headers for an inference POST with an Idempotency-Key (and optionally Prefer: respond-async). */
export function keyed (id: string, respondAsync = false): RequestInit {
  return { headers: { 'idempotency-key': id, ...(respondAsync && { prefer: 'respond-async' }) } }
}
