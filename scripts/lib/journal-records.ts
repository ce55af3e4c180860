import { journalKeys } from '../../src/journal/redis/keys.js'
import { FINGERPRINT_LENGTH } from '../../src/journal/record.js'
import type { Cluster, Redis } from 'ioredis'
import { RedisServer } from './redis-server.js'

// Reads a run's requests back from the journal after the fact (the chaos harness and the
// simulator's replay count replays this way), in the journal's own key layout
// (docs/journal.md): a packed record per request and, once a hand-off or a replay
// changed it, a state hash.

export interface JournalRecord {
  readonly state: string | null
  /** Claims by a replaying instance: > 0 means a peer computed the answer after a hand-off or takeover. */
  readonly attempts: number
}

const FINAL_STATE_AT = 1 + FINGERPRINT_LENGTH

/**
 * Each request's record (state, replay claims) and what is left in the replay streams,
 * read from a server or through a client (one node's, or a Cluster client: the caller's
 * to disconnect).
 */
export async function readJournal (source: RedisServer | Redis | Cluster, namespace: string, ids: readonly string[], partitions = 1): Promise<{ records: Map<string, JournalRecord>, replayBacklog: number }> {
  if (source instanceof RedisServer) {
    const client = source.client()
    return readJournal(client, namespace, ids, partitions).finally(() => client.disconnect())
  }
  const client = source
  const keys = journalKeys(namespace, partitions)
  const records = new Map<string, JournalRecord>()
  for (let from = 0; from < ids.length; from += 500) {
    // Keys of several slots: one command each (a client with auto-pipelining batches them per node).
    await Promise.all(ids.slice(from, from + 500).map(async (id) => {
      const [head, [pendingState, attempts]] = await Promise.all([
        client.getrange(keys.record(id), 0, FINAL_STATE_AT),
        client.hmget(keys.state(id), 'state', 'attempts')
      ])
      const state = head === '' ? null : head[0] === 'F' ? (head[FINAL_STATE_AT] === 'd' ? 'done' : 'failed') : (pendingState ?? 'queued')
      records.set(id, { state, attempts: Number(attempts ?? 0) })
    }))
  }
  const backlog = await Promise.all(keys.partitions.map((p) => client.xlen(p.replayStream)))
  return { records, replayBacklog: backlog.reduce((sum, n) => sum + n, 0) }
}
