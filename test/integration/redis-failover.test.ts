import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { formatReport, type ChaosReport } from '../../scripts/chaos/report.js'
import { runChaos } from '../../scripts/chaos/run.js'
import type { ChaosOptions } from '../../scripts/chaos/options.js'

// A Redis primary SIGKILLed under load: two gateways on a three-primary Cluster (or a
// primary with two replicas behind Sentinel), clients sending synchronous and
// respond-async requests with Idempotency-Keys and retrying as real ones do. The dead
// node is started again mid-run and must rejoin as a replica. With JOURNAL_MIN_REPLICAS=1
// no accepted request may be lost; with 0 the run counts what asynchronous replication
// lost (the README's table comes from these runs).

const RUN: Partial<ChaosOptions> = {
  durationS: 10,
  instances: 2,
  concurrency: 8,
  // No gateway is killed or drained here: the failover is the only event.
  firstEventS: 10,
  redisKillAtS: 3,
  redisRestartAfterS: 3,
  asyncShare: 0.3,
  // Batches on a failing-over Redis are the batch tests' business; this run is about requests.
  batchLines: 0,
  settleS: 20
}

async function failover (t: { diagnostic: (line: string) => void }, options: Partial<ChaosOptions>): Promise<{ report: ChaosReport, summary: string }> {
  const lines: string[] = []
  const report = await runChaos({ ...RUN, ...options, progress: (line) => lines.push(line) })
  const summary = `${formatReport(report)}\n${lines.join('\n')}`
  for (const line of formatReport(report).split('\n')) t.diagnostic(line)
  assert.equal(report.redisEvents.length, 1, `one primary killed\n${summary}`)
  assert.ok(report.sent > 20 && report.async > 0, `a real load, respond-async included (${report.sent} requests)\n${summary}`)
  assert.equal(report.wrong, 0, summary)
  return { report, summary }
}

function degradedAtEnd (report: ChaosReport): number {
  return Object.entries(report.fleetCounters).filter(([name]) => name.startsWith('spotgate_journal_partition_degraded{')).reduce((sum, [, value]) => sum + value, 0)
}

describe('a Redis primary SIGKILLed under load', () => {
  test('Cluster, JOURNAL_MIN_REPLICAS=1: nothing accepted is lost, and the restarted node restores full service', async (t) => {
    const { report, summary } = await failover(t, { redis: 'cluster', minReplicas: 1, seed: 12_001 })
    const [event] = report.redisEvents
    t.diagnostic(`refused during the failover: ${event.refused}; lost: ${report.lost} (${report.forgotten} accepted, then unknown); answered but not final in the journal: ${report.answeredNotFinalInJournal}`)
    assert.equal(report.lost, 0, summary)
    assert.equal(report.answeredMissingInJournal, 0, `no acknowledged accept is missing from the journal\n${summary}`)
    assert.ok(event.healthyMs !== undefined, `the killed primary came back as a synced replica\n${summary}`)
    assert.equal(degradedAtEnd(report), 0, `no partition degraded once the replica is back\n${summary}`)
  })

  test('Cluster, JOURNAL_MIN_REPLICAS=0: what asynchronous replication loses is counted, and nothing is answered wrongly', async (t) => {
    const { report, summary } = await failover(t, { redis: 'cluster', minReplicas: 0, seed: 12_002 })
    t.diagnostic(`refused during the failover: ${report.redisEvents[0].refused}; lost: ${report.lost} (${report.forgotten} accepted, then unknown); answered but gone from the journal: ${report.answeredMissingInJournal}, not final: ${report.answeredNotFinalInJournal}`)
    assert.equal(report.answeredFirstTime + report.answeredAfterRetry + report.lost, report.sent, summary)
    assert.ok(report.redisEvents[0].healthyMs !== undefined, summary)
  })

  test('Sentinel, JOURNAL_MIN_REPLICAS=1: the promoted replica takes over with nothing accepted lost', async (t) => {
    const { report, summary } = await failover(t, { redis: 'sentinel', minReplicas: 1, seed: 12_003 })
    t.diagnostic(`refused during the failover: ${report.redisEvents[0].refused}; lost: ${report.lost}`)
    assert.equal(report.lost, 0, summary)
    assert.equal(report.answeredMissingInJournal, 0, summary)
  })
})
