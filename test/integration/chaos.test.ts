import assert from 'node:assert/strict'
import { test } from 'node:test'
import { formatReport } from '../../scripts/chaos/report.js'
import { runChaos } from '../../scripts/chaos/run.js'

// A short `npm run chaos`: three gateways and a redis-server of its own, load with
// idempotency keys and retries, one SIGKILL and one SIGTERM under that load.

test('chaos: a SIGKILL and a SIGTERM under load lose no request and answer none wrongly, and the batch running through them loses, duplicates and spoils no line', async (t) => {
  const lines: string[] = []
  const report = await runChaos({
    durationS: 10,
    instances: 3,
    concurrency: 8,
    seed: 20_240_601,
    firstEventS: 1.5,
    intervalS: 3,
    // A kill and a drain, however long a replacement takes to start on this machine.
    minEvents: 2,
    settleS: 20,
    batchLines: 250,
    progress: (line) => lines.push(line)
  })
  const summary = formatReport(report)
  for (const line of summary.split('\n')) t.diagnostic(line)
  assert.ok(report.kills >= 1, `at least one SIGKILL under load\n${lines.join('\n')}`)
  assert.ok(report.drains >= 1, `at least one SIGTERM under load\n${lines.join('\n')}`)
  assert.ok(report.sent > 20, `a real load (${report.sent} requests)`)
  assert.equal(report.lost, 0, summary)
  assert.equal(report.wrong, 0, summary)
  assert.ok(report.batch !== undefined)
  assert.equal(report.batch.status, 'completed', summary)
  assert.deepEqual([report.batch.lost, report.batch.duplicated, report.batch.wrong, report.batch.errorLines], [0, 0, 0, 0], summary)
  assert.deepEqual(report.batch.requestCounts, { total: 250, completed: 250, failed: 0 }, summary)
  assert.ok(report.drainEvents.every((d) => d.exitCode === 0 && !d.forced), `every drained instance exited 0 on its own\n${summary}`)
})
