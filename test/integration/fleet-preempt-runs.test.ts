import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { test } from 'node:test'
import { compiledScript } from '../../scripts/lib/paths.js'

// `npm run fleet -- --preempt --runs N`, shortened: a fresh fleet behind HAProxy per run,
// an AWS spot notice for one gateway under keyed load each time. HAProxy's retries of the
// draining gateway's 503s race the peers' replays of the same requests; none may be lost.

const FLEET_SCRIPT = compiledScript('fleet.js')
const RUNS = 2

test(`${RUNS} preemptions in a row behind HAProxy lose no request`, async (t) => {
  const child = spawn(process.execPath, [FLEET_SCRIPT, '--preempt', '--runs', String(RUNS), '--duration', '6'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const timer = setTimeout(() => child.kill('SIGKILL'), 150_000)
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve))
  clearTimeout(timer)
  const summary = output.slice(output.lastIndexOf('preemption runs under load'))
  for (const line of summary.split('\n')) t.diagnostic(line)
  assert.equal(code, 0, output.slice(-3000))
  assert.match(output, new RegExp(`${RUNS} preemption runs under load: ${RUNS} passed, 0 failed`))
  assert.match(output, /lost 0, failed 0/)
})
