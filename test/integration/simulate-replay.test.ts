import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { compiledScript } from '../../scripts/lib/paths.js'

// A short `npm run simulate -- --replay`: the SpotServe 0203 segment (9 minutes, three
// instances taken back) at 60× against real processes: redis-server, HAProxy, gateways
// started and sent AWS spot notices as the trace says, clients retrying through HAProxy.

const SIMULATE = compiledScript('simulate.js')
/** The replay itself takes about 9 s of trace plus start-up; the bound is for a loaded machine. */
const LIMIT_MS = 240_000

test('replaying spotserve-0203 at 60× delivers every removal as a notice and loses and garbles no request', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'spotgate-replay-test-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const json = join(dir, 'replay.json')
  const child = spawn(process.execPath, [SIMULATE, '--replay', 'spotserve-0203', '--speed', '60', '--json', json], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const timer = setTimeout(() => child.kill('SIGINT'), LIMIT_MS)
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve))
  clearTimeout(timer)
  for (const line of output.trimEnd().split('\n')) t.diagnostic(line)

  assert.equal(code, 0, output)
  const report = JSON.parse(await readFile(json, 'utf8'))
  assert.equal(report.scaled.removalsInTrace, 3)
  assert.equal(report.scaled.removalsPlayed, 3, 'every removal of the segment fits beside a survivor')
  assert.equal(report.preemptions, 3)
  assert.equal(report.notices.delivered, 3, 'each gateway taken back read its AWS notice')
  assert.ok(report.scaled.peakPlayed <= 4, 'no more gateways at once than the cap')
  assert.ok(report.requests.sent > 20, `a real load (${report.requests.sent} requests)`)
  assert.equal(report.requests.answered, report.requests.sent)
  assert.equal(report.requests.lost, 0)
  assert.equal(report.requests.wrong, 0)
  assert.equal(report.instances, report.scaled.instancesPlayed)
  assert.ok(report.wallSeconds > 0 && report.cost.spot > 0)
})
