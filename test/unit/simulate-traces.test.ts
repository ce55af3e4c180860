import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { InputError } from '../../scripts/simulate/input-error.js'
import { peakOffered, removals } from '../../scripts/simulate/trace.js'
import { loadTrace } from '../../scripts/simulate/traces/catalog.js'

// The shipped traces read as their READMEs describe them, and a malformed trace file is
// one InputError naming the file and line, never a crash.

describe('shipped traces', () => {
  test('spotserve-g4dn: 79 instances, 74 taken back, at most 24 at once, 10.6 hours', () => {
    const trace = loadTrace('spotserve-g4dn')
    assert.equal(trace.cloud, 'aws')
    assert.equal(trace.instances.length, 79)
    assert.equal(removals(trace), 74)
    assert.equal(peakOffered(trace), 24)
    assert.equal(trace.spanS, (38_760_000 - 480_000) / 1000)
    assert.equal(trace.prices.onDemand, 3.9)
    assert.equal(trace.prices.spot.get(''), 1.9)
  })

  test('the SpotServe segments end at their DONE line', () => {
    assert.equal(loadTrace('spotserve-0203').spanS, 540)
    assert.equal(loadTrace('spotserve-0304').spanS, 1320)
    assert.equal(loadTrace('spotserve-0506').spanS, 1440)
    assert.equal(removals(loadTrace('spotserve-0506')), 3)
  })

  test('skynomad-gcp-h100: 13 zones priced per H100, the cheapest on-demand region for on-demand replicas', () => {
    const trace = loadTrace('skynomad-gcp-h100')
    assert.equal(trace.cloud, 'gcp')
    assert.equal(trace.zones.length, 13)
    assert.equal(peakOffered(trace), 194)
    assert.ok(Math.abs((trace.prices.spot.get('us-central1-a') as number) - 18.979008 / 8) < 1e-9)
    assert.ok(Math.abs(trace.prices.onDemand - 82.52543396 / 8) < 1e-9)
    const zone = loadTrace('skynomad-gcp-h100', { zone: 'us-west1-b' })
    assert.deepEqual(zone.zones, ['us-west1-b'])
    assert.ok(zone.instances.every((i) => i.zone === 'us-west1-b'))
  })

  test('prices from the command line replace the trace\'s', () => {
    const trace = loadTrace('skynomad-gcp-h100', { spotPrice: 1, onDemandPrice: 3 })
    assert.ok([...trace.prices.spot.values()].every((p) => p === 1))
    assert.equal(trace.prices.onDemand, 3)
  })
})

describe('trace validation', () => {
  async function file (t: { after: (fn: () => Promise<void>) => void }, name: string, content: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'spotgate-trace-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    const path = join(dir, name)
    await writeFile(path, content)
    return path
  }

  function refuses (load: () => unknown, pattern: RegExp): void {
    assert.throws(load, (error: unknown) => {
      assert.ok(error instanceof InputError, `an InputError, got ${String(error)}`)
      assert.match(error.message, pattern)
      assert.doesNotMatch(error.message, /\n/, 'one line')
      return true
    })
  }

  test('an unknown trace name', () => {
    refuses(() => loadTrace('spotserve-9999'), /unknown trace "spotserve-9999"/)
  })

  const cases: Array<[string, string, string, RegExp]> = [
    ['a timestamp that is not a number', 'bad.csv', '0,add,n1\nsoon,add,n2\n', /bad.csv:2: bad timestamp "soon"/],
    ['a negative timestamp', 'bad.csv', '-5,add,n1\n', /bad.csv:1: bad timestamp/],
    ['a timestamp past 2^53', 'bad.csv', '0,add,n1\n1e308,remove,n1\n', /bad.csv:2: bad timestamp "1e308"/],
    ['a trace of more than ten years (a unit mistake)', 'bad.csv', '0,add,n1\n999999999999999,remove,n1\n', /bad.csv:2: timestamp 999999999999999 is more than ten years after the first event's/],
    ['timestamps out of order', 'bad.csv', '0,add,n1\n600,add,n2\n300,remove,n1\n', /bad.csv:3: timestamp 300 is before the previous event's \(600\)/],
    ['a removal of an instance never added', 'bad.csv', '0,add,n1\n60,remove,n7\n', /bad.csv:2: removes n7, which was never added/],
    ['a removal of an instance already removed', 'bad.csv', '0,add,n1\n60,remove,n1\n120,remove,n1\n', /bad.csv:3: removes n1, which was already removed/],
    ['an instance added twice while running', 'bad.csv', '0,add,n1\n60,add,n1\n', /bad.csv:2: adds n1, which is already running/],
    ['an unknown action', 'bad.csv', '0,add,n1\n60,reboot,n1\n', /bad.csv:2: unknown action "reboot"/],
    ['an empty file', 'empty.csv', '\n', /not a trace format/],
    ['a trace that lasts no time', 'flat.csv', '0,add,n1\n0,add,n2\n', /lasts no time/],
    ['a segment line that is not JSON', 'seg.txt', '[0, "add", {"nodes": ["a"]}]\n[60, "remove", {"nodes": ["a"]\n', /seg.txt:2: not JSON/],
    ['a segment event after DONE', 'seg.txt', '[0, "add", {"nodes": ["a"]}]\n[60, "DONE", {"nodes": []}]\n[90, "remove", {"nodes": ["a"]}]\n', /seg.txt:3: an event after DONE/],
    ['a segment removal of a node never added', 'seg.txt', '[0, "add", {"nodes": ["a"]}]\n[60, "remove", {"nodes": ["b"]}]\n', /seg.txt:2: removes b, which was never added/],
    ['a probe with a bad date', 'p.csv', 'scheduled_at,zone,instances_created_of_16,capacity_exhausted_detected\n2025-10-03T17:10:00Z,us-east4-a,3,13\nyesterday,us-east4-a,2,14\n', /p.csv:3: bad timestamp "yesterday"/],
    ['a probe with a negative count', 'p.csv', 'scheduled_at,zone,instances_created_of_16,capacity_exhausted_detected\n2025-10-03T17:10:00Z,us-east4-a,-3,19\n', /p.csv:2: bad instance count "-3"/],
    ['a probe counting more instances than any fleet', 'p.csv', 'scheduled_at,zone,instances_created_of_16,capacity_exhausted_detected\n2025-10-03T17:10:00Z,us-east4-a,3000000,0\n', /p.csv:2: bad instance count "3000000" \(expected an integer from 0 to 100000\)/],
    ['probes out of order', 'p.csv', 'scheduled_at,zone,instances_created_of_16,capacity_exhausted_detected\n2025-10-03T17:20:00Z,us-east4-a,3,13\n2025-10-03T17:10:00Z,us-east4-a,3,13\n', /p.csv:3: timestamp .* is before the previous probe's/]
  ]
  for (const [what, name, content, pattern] of cases) {
    test(`a trace file with ${what} is refused`, async (t) => {
      const path = await file(t, name, content)
      refuses(() => loadTrace(path), pattern)
    })
  }

  test('a negative price in the probes\' price file is refused', async (t) => {
    const probes = await file(t, 'p.csv', 'scheduled_at,zone,instances_created_of_16,capacity_exhausted_detected\n2025-10-03T17:10:00Z,us-east4-a,3,13\n2025-10-03T17:20:00Z,us-east4-a,4,12\n')
    await writeFile(join(probes, '..', 'gcp-price-cache.json'), JSON.stringify({ 'us-east4_a3-highgpu-8g.json': { region: 'us-east4', machine_type: 'a3-highgpu-8g', price: -14.8, on_demand_price: 82.5 } }))
    refuses(() => loadTrace(probes), /gcp-price-cache.json: us-east4_a3-highgpu-8g.json: price must be a price >= 0, got -14.8/)
  })

  test('a zone the trace does not have, or a zone for a trace without zones', () => {
    refuses(() => loadTrace('skynomad-gcp-h100', { zone: 'mars-north1-a' }), /--zone: .* has no zone mars-north1-a \(zones: asia-south2-b, /)
    refuses(() => loadTrace('spotserve-g4dn', { zone: 'us-east-1a' }), /--zone: spotserve-g4dn is one pool of instances, without zones/)
  })

  test('a valid file of each format is read like the shipped ones', async (t) => {
    const csv = await file(t, 'mine.csv', '1000,add,a\n1000,add,b\n61000,remove,a\n121000,add,a\n181000,remove,b\n')
    const trace = loadTrace(csv)
    assert.equal(trace.instances.length, 3, 'a name reused after its removal is another instance')
    assert.equal(trace.spanS, 180)
    assert.deepEqual(trace.instances.map((i) => [i.addS, i.removeS]), [[0, 60], [0, 180], [120, undefined]])
  })
})
