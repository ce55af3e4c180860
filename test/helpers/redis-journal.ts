import { randomUUID } from 'node:crypto'
import { pino } from 'pino'
import { createRedisJournal, type RedisJournalParts } from '../../src/journal/create-journal.js'
import type { RedisTarget } from '../../src/journal/redis/target.js'
import { FINGERPRINT_LENGTH } from '../../src/journal/record.js'
import type { AcceptEntry, FinalState, StoredResponse, Completion } from '../../src/journal/journal.js'
import { createMetrics, type Metrics } from '../../src/metrics.js'
import type { Cleanup } from './app.js'

// The Redis journal of one "instance" inside the test process, wired as an instance
// wires it, for tests that play a peer or drive the journal directly.

export type TestRedisJournal = RedisJournalParts & { readonly metrics: Metrics }

export interface TestRedisJournalOptions {
  readonly namespace?: string
  readonly instanceId?: string
  readonly resultTtlSeconds?: number
  readonly partitions?: number
  readonly commandTimeoutMs?: number
  readonly leaseTtlMs?: number
  readonly minReplicas?: number
  readonly replicaTimeoutMs?: number
  /** How long to wait for the journal to answer before failing; 0: do not wait. */
  readonly availableWithinMs?: number
}

/** `target`: a redis:// URL or a Sentinel or Cluster target. */
export async function redisJournal (t: Cleanup, target: string | RedisTarget, options: TestRedisJournalOptions = {}): Promise<TestRedisJournal> {
  const metrics = createMetrics()
  const parts = createRedisJournal({
    target: typeof target === 'string' ? { mode: 'single', url: target } : target,
    instanceId: options.instanceId ?? 'test-instance',
    commandTimeoutMs: options.commandTimeoutMs ?? 500,
    namespace: options.namespace ?? randomUUID(),
    partitions: options.partitions ?? 1,
    resultTtlSeconds: options.resultTtlSeconds ?? 60,
    leaseTtlMs: options.leaseTtlMs ?? 5000,
    minReplicas: options.minReplicas ?? 0,
    replicaTimeoutMs: options.replicaTimeoutMs ?? 500
  }, { metrics, log: pino({ level: 'silent' }) })
  t.after(() => parts.close())
  const waitMs = options.availableWithinMs ?? 10_000
  const deadline = Date.now() + waitMs
  while (waitMs > 0 && parts.connection.unavailableReason() !== undefined) {
    if (Date.now() > deadline) throw new Error(`journal not available: ${parts.connection.unavailableReason() ?? ''}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return { ...parts, metrics }
}

/** A fingerprint of the record length from a short label. */
export function fingerprintOf (label: string): string {
  return label.padEnd(FINGERPRINT_LENGTH, '.').slice(0, FINGERPRINT_LENGTH)
}

/** A pending record as record.ts lays it out, with arbitrary request bytes. */
export function rawEntry (id: string, owner: string, fingerprint = fingerprintOf('fp-a'), request: Buffer = Buffer.from(`request of ${id}`)): AcceptEntry {
  return { id, fingerprint, record: Buffer.concat([Buffer.from(`P${fingerprint}${owner}\n`, 'latin1'), request]) }
}

export function completion (id: string, state: FinalState, response: StoredResponse, fingerprint = fingerprintOf('fp-a')): Completion {
  return { id, fingerprint, state, response }
}
