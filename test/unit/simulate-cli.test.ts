import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { compiledScript, repoPath } from '../../scripts/lib/paths.js'

// `npm run simulate` as the README's "What does spot save?" fixes it: the --json shape, and a bad command
// line or trace file as one line on stderr with exit 2, never a stack trace.

/**
 * The command: compiled when the build is at least as new as the sources (`npm test`
 * builds first; a plain node start is a tenth of tsx's), else from the TypeScript source.
 */
const SIMULATE = compiledIsCurrent() ? [compiledScript('simulate.js')] : [...process.execArgv, repoPath('scripts', 'simulate.ts')]

function compiledIsCurrent (): boolean {
  const sources = [repoPath('scripts', 'simulate.ts'), ...readdirSync(repoPath('scripts', 'simulate'), { recursive: true, encoding: 'utf8' }).map((f) => repoPath('scripts', 'simulate', f))]
  try {
    const built = statSync(compiledScript('simulate.js')).mtimeMs
    return sources.every((file) => statSync(file).mtimeMs <= built)
  } catch {
    return false
  }
}

function simulate (...args: string[]): { status: number | null, stdout: string, stderr: string } {
  const result = spawnSync(process.execPath, [...SIMULATE, ...args], { encoding: 'utf8', timeout: 60_000 })
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

async function scratch (t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'spotgate-simulate-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

describe('npm run simulate --json', () => {
  test('has the fields the README names, consistent with each other', async (t) => {
    const file = join(await scratch(t), 'out.json')
    const run = simulate('--trace', 'spotserve-g4dn', '--spot', '9', '--on-demand', '1', '--rps', '750', '--capacity-rps', '100', '--notice-s', '120', '--cold-start-s', '120', '--json', file)
    assert.equal(run.status, 0, run.stderr)
    const report = JSON.parse(await readFile(file, 'utf8'))
    assert.equal(report.trace.name, 'spotserve-g4dn')
    assert.equal(typeof report.trace.hours, 'number')
    for (const key of ['spot', 'onDemand', 'total', 'allOnDemand']) assert.equal(typeof report.cost[key], 'number', `cost.${key}`)
    for (const key of ['saving', 'availability', 'spotHours', 'onDemandHours']) assert.equal(typeof report[key], 'number', key)
    for (const key of ['offered', 'served', 'delayed', 'lost']) assert.ok(Number.isInteger(report.requests[key]), `requests.${key}`)
    assert.ok(Math.abs(report.saving - (1 - report.cost.total / report.cost.allOnDemand)) < 1e-3)
    assert.ok(Math.abs(report.cost.total - report.cost.spot - report.cost.onDemand) < 0.02)
    assert.ok(Math.abs(report.cost.spot - report.spotHours * 1.9) < 0.01, 'spot cost = billed spot hours × the trace\'s spot price')
    assert.ok(Math.abs(report.cost.onDemand - report.onDemandHours * 3.9) < 0.01)
    assert.ok(report.availability > 0 && report.availability <= 1)
    assert.equal(report.requests.served + report.requests.lost, report.requests.offered)
    assert.ok(report.requests.delayed <= report.requests.served)
    assert.equal(report.fleet.spot, 9)
    assert.equal(report.fleet.onDemand, 1)
    assert.match(run.stdout, /saving/)
  })

  test('prices default to the trace\'s own and flags replace them', async (t) => {
    const dir = await scratch(t)
    const mine = simulate('--trace', 'spotserve-0304', '--price-spot', '1', '--price-on-demand', '4', '--json', join(dir, 'a.json'))
    assert.equal(mine.status, 0, mine.stderr)
    const report = JSON.parse(await readFile(join(dir, 'a.json'), 'utf8'))
    assert.equal(report.prices.spot, 1)
    assert.equal(report.prices.onDemand, 4)
    assert.ok(Math.abs(report.cost.spot - report.spotHours) < 0.01)
  })
})

describe('npm run simulate --json -', () => {
  test('writes the JSON report to stdout in place of the text one', () => {
    const run = simulate('--trace', 'spotserve-g4dn', '--json', '-')
    assert.equal(run.status, 0, run.stderr)
    const report = JSON.parse(run.stdout) as { trace: { name: string } }
    assert.equal(report.trace.name, 'spotserve-g4dn')
  })
})

describe('npm run simulate refuses bad input with one line and exit 2', () => {
  test('an output file that cannot be written is refused before the run, with nothing on stdout', () => {
    const run = simulate('--trace', 'spotserve-g4dn', '--json', '/nonexistent-dir/report.json')
    assert.equal(run.status, 2)
    assert.equal(run.stdout, '')
    assert.match(run.stderr, /^simulate: cannot write \/nonexistent-dir\/report\.json: /)
  })

  const cases: Array<[string, string[], RegExp]> = [
    ['no trace', [], /--trace NAME\|FILE or --replay NAME\|FILE is required/],
    ['an unknown option', ['--trace', 'spotserve-g4dn', '--spot-count', '3'], /unknown option --spot-count/],
    ['an unknown trace name', ['--trace', 'spotserve-1999'], /unknown trace "spotserve-1999"/],
    ['a negative spot count', ['--trace', 'spotserve-g4dn', '--spot', '-1'], /--spot: expected a whole number >= 0 and <= 100000 or "all", got "-1"/],
    ['a fractional on-demand count', ['--trace', 'spotserve-g4dn', '--on-demand', '1.5'], /--on-demand: expected a whole number >= 0 and <= 100000, got "1.5"/],
    ['zero capacity per replica', ['--trace', 'spotserve-g4dn', '--capacity-rps', '0'], /--capacity-rps: expected a number > 0, got "0"/],
    ['no load', ['--trace', 'spotserve-g4dn', '--rps', '-3'], /--rps: expected a number > 0/],
    ['a fleet of no replicas', ['--trace', 'spotserve-g4dn', '--spot', '0', '--on-demand', '0'], /the fleet has no replicas/],
    ['a negative price', ['--trace', 'spotserve-g4dn', '--price-spot', '-0.5'], /--price-spot: expected a number >= 0 and <= 100000, got "-0.5"/],
    ['a price past any machine\'s', ['--trace', 'spotserve-g4dn', '--price-spot', '1e308'], /--price-spot: expected a number >= 0 and <= 100000, got "1e308"/],
    ['an on-demand fleet past 100000 replicas', ['--trace', 'spotserve-g4dn', '--on-demand', '1e15'], /--on-demand: expected a whole number >= 0 and <= 100000, got "1e15"/],
    ['a spot fleet past 100000 replicas', ['--trace', 'spotserve-g4dn', '--spot', '200000'], /--spot: expected a whole number >= 0 and <= 100000 or "all", got "200000"/],
    ['a negative notice', ['--trace', 'spotserve-g4dn', '--notice-s', '-30'], /--notice-s: expected a number >= 0/],
    ['a value that is not a number', ['--trace', 'spotserve-g4dn', '--cold-start-s', '2min'], /--cold-start-s: expected a number >= 0 and <= 86400, got "2min"/],
    ['an unknown policy', ['--trace', 'spotserve-g4dn', '--policy', 'hope'], /--policy: expected fixed or fallback, got "hope"/],
    ['an unknown zone', ['--trace', 'skynomad-gcp-h100', '--zone', 'mars-north1-a'], /has no zone mars-north1-a/],
    ['a zone for a trace without zones', ['--trace', 'spotserve-0203', '--zone', 'us-east-1a'], /one pool of instances, without zones/],
    ['both modes', ['--trace', 'spotserve-g4dn', '--replay', 'spotserve-0203'], /not both/],
    ['a simulation flag on a replay', ['--replay', 'spotserve-0203', '--spot', '3'], /--spot is for --trace/],
    ['a replay of an unknown trace', ['--replay', 'spotserve-1999'], /unknown trace "spotserve-1999"/],
    ['a replay too fast for the notice', ['--replay', 'skynomad-gcp-h100', '--speed', '60'], /--speed 60: the 30 s gcp notice would last 0.50 s; at most 30× for this trace/],
    ['a replay speed of zero', ['--replay', 'spotserve-0203', '--speed', '0'], /--speed: expected a number >= 1/]
  ]
  for (const [what, args, pattern] of cases) {
    test(what, () => {
      const run = simulate(...args)
      assert.equal(run.status, 2, `exit 2 for ${args.join(' ')}; stderr: ${run.stderr}`)
      assert.equal(run.stdout, '')
      const lines = run.stderr.trimEnd().split('\n')
      assert.equal(lines.length, 1, `one line: ${run.stderr}`)
      assert.match(lines[0], /^simulate: /)
      assert.match(lines[0], pattern)
    })
  }

  test('a malformed trace file names its line', async (t) => {
    const file = join(await scratch(t), 'trace.csv')
    await writeFile(file, '0,add,node1\n60000,remove,node2\n')
    const run = simulate('--trace', file)
    assert.equal(run.status, 2)
    assert.match(run.stderr, /^simulate: \S*trace\.csv:2: removes node2, which was never added\n$/)
  })
})
