import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { simulate } from '../../scripts/simulate/engine.js'
import { replicasNeeded, type FleetShape, type Settings } from '../../scripts/simulate/fleet.js'
import { FluidQueue } from '../../scripts/simulate/fluid-queue.js'
import { DEFAULTS } from '../../scripts/simulate/options.js'
import { NOTICE_S, type Trace } from '../../scripts/simulate/trace.js'
import { loadTrace, tracesDirectory } from '../../scripts/simulate/traces/catalog.js'

const settingsFor = (trace: Trace, overrides: Partial<Settings> = {}): Settings => ({
  rps: DEFAULTS.rps,
  capacityRps: DEFAULTS.capacityRps,
  noticeS: NOTICE_S[trace.cloud],
  coldStartS: DEFAULTS.coldStartS,
  replayDelayS: DEFAULTS.replayDelayS,
  drainMarginS: DEFAULTS.drainMarginS,
  leaseTtlS: DEFAULTS.leaseTtlS,
  queuePerReplica: DEFAULTS.maxQueue,
  ...overrides
})

const TAKE_ALL: FleetShape = { spot: Infinity, onDemand: 0, policy: 'fixed' }

// The instance-hours each trace file holds, read straight from the file, without the simulator's loaders.
function lifetimesOfEventLog (file: string): number {
  const events = readFileSync(join(tracesDirectory(), file), 'utf8').trim().split('\n').map((line) => line.split(','))
  const added = new Map<string, number>()
  let total = 0
  for (const [ms, action, node] of events) {
    if (action === 'add') added.set(node, Number(ms))
    else { total += Number(ms) - (added.get(node) as number); added.delete(node) }
  }
  const end = Number(events[events.length - 1][0])
  for (const start of added.values()) total += end - start
  return total / 3_600_000
}

function lifetimesOfSegment (file: string): number {
  const events = readFileSync(join(tracesDirectory(), file), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as [number, string, { nodes: string[] }])
  const end = events[events.length - 1][0]
  let total = 0
  for (const [ms, action, { nodes }] of events) {
    if (action === 'add') total += nodes.length * (end - ms)
    if (action === 'remove') total -= nodes.length * (end - ms)
  }
  return total / 3_600_000
}

/** Σ over zones and probes of the count × the time until the next probe (the last probe: the median gap). */
function capacityHoursOfProbes (zone?: string): number {
  const rows = readFileSync(join(tracesDirectory(), 'skynomad-gcp-h100/h100-16-probes.csv'), 'utf8').trim().split('\n').slice(1).map((line) => line.split(','))
  const ticks = [...new Set(rows.map((r) => r[0]))].map((at) => Date.parse(at))
  const gaps = ticks.slice(1).map((t, i) => t - ticks[i]).sort((a, b) => a - b)
  const next = new Map(ticks.map((t, i) => [t, ticks[i + 1] ?? t + gaps[Math.floor(gaps.length / 2)]]))
  let total = 0
  for (const [at, z, count] of rows) {
    if (zone !== undefined && z !== zone) continue
    const t = Date.parse(at)
    total += Number(count) * ((next.get(t) as number) - t)
  }
  return total / 3_600_000
}

describe('taking all the spot capacity a trace offers', () => {
  const cases: Array<[string, () => number]> = [
    ['spotserve-g4dn', () => lifetimesOfEventLog('spotserve-g4dn/g4dn.csv')],
    ['spotserve-0203', () => lifetimesOfSegment('spotserve-g4dn/trace_0203.txt')],
    ['spotserve-0304', () => lifetimesOfSegment('spotserve-g4dn/trace_0304.txt')],
    ['spotserve-0506', () => lifetimesOfSegment('spotserve-g4dn/trace_0506.txt')],
    ['skynomad-gcp-h100', () => capacityHoursOfProbes()],
    ['skynomad-gcp-h100 us-central1-a', () => capacityHoursOfProbes('us-central1-a')]
  ]
  for (const [name, independent] of cases) {
    test(`${name}: the simulated spot hours are the trace's own instance-hours`, () => {
      const [traceName, zone] = name.split(' ')
      const trace = loadTrace(traceName, { zone })
      const result = simulate({ trace, shape: TAKE_ALL, settings: settingsFor(trace) })
      const expected = independent()
      assert.ok(expected > 0)
      assert.ok(Math.abs(result.spotHours - expected) < 1e-9 * expected, `${result.spotHours} h simulated, ${expected} h in the file`)
      assert.equal(result.onDemandHours, 0)
    })
  }

  test('spot cost is the billed spot hours at the spot price, cold starts and drains included', () => {
    const trace = loadTrace('spotserve-g4dn')
    for (const shape of [TAKE_ALL, { spot: 8, onDemand: 0, policy: 'fixed' } as const]) {
      const result = simulate({ trace, shape, settings: settingsFor(trace) })
      assert.ok(Math.abs(result.cost.spot - result.spotHours * 1.9) < 1e-9)
      assert.ok(result.counted.coldStartHours > 0 && result.counted.drainingHours > 0)
    }
  })
})

describe('fleet shapes', () => {
  const traces: Array<[string, string?]> = [['spotserve-g4dn'], ['spotserve-0203'], ['spotserve-0304'], ['spotserve-0506'], ['skynomad-gcp-h100', 'us-west1-b'], ['skynomad-gcp-h100', 'asia-southeast1-c']]

  test('more on-demand baseline never lowers availability, whatever the spot count and policy', () => {
    for (const [name, zone] of traces) {
      const trace = loadTrace(name, { zone })
      const settings = settingsFor(trace)
      const need = replicasNeeded(settings)
      for (const policy of ['fixed', 'fallback'] as const) {
        for (const spot of [0, need - 1, need, need + 1]) {
          let previous = -1
          for (let onDemand = 0; onDemand <= need + 1; onDemand++) {
            const { availability } = simulate({ trace, shape: { spot, onDemand, policy }, settings })
            assert.ok(availability >= previous - 1e-12, `${name} ${zone ?? ''} ${policy} ${spot} spot: ${onDemand} on-demand give ${availability}, ${onDemand - 1} gave ${previous}`)
            previous = availability
          }
          assert.equal(previous, 1, 'with the whole load on on-demand replicas the load is always covered')
        }
      }
    }
  })

  test('an all-on-demand fleet of the replicas needed saves nothing and loses nothing', () => {
    const trace = loadTrace('spotserve-g4dn')
    const settings = settingsFor(trace)
    const result = simulate({ trace, shape: { spot: 0, onDemand: replicasNeeded(settings), policy: 'fixed' }, settings })
    assert.ok(Math.abs(result.saving) < 1e-12)
    assert.equal(result.availability, 1)
    assert.equal(result.requests.lost, 0)
    assert.equal(result.requests.delayed, 0)
  })

  test('every request offered is served or lost, and a run is the same every time', () => {
    for (const [name, zone] of traces) {
      const trace = loadTrace(name, { zone })
      for (const overrides of [{}, { noticeS: 0 }, { capacityRps: 2, rps: 15, noticeS: 10 }]) {
        const input = { trace, shape: { spot: 8, onDemand: 0, policy: 'fallback' as const }, settings: settingsFor(trace, overrides) }
        const result = simulate(input)
        const { offered, served, lost, delayed } = result.requests
        assert.ok(Math.abs(served + lost - offered) < 1e-6 * offered)
        assert.ok(delayed <= served + 1e-6 * offered && lost >= 0)
        assert.deepEqual(simulate(input), result)
      }
    }
  })

  test('a 2-minute notice lets every drain finish its queue; no notice means its queue is replayed', () => {
    const trace = loadTrace('spotserve-g4dn')
    const noticed = simulate({ trace, shape: { spot: 8, onDemand: 0, policy: 'fixed' }, settings: settingsFor(trace) })
    assert.ok(noticed.counted.preemptions > 0)
    assert.equal(noticed.requests.replayed, 0)
    const killed = simulate({ trace, shape: { spot: 8, onDemand: 0, policy: 'fixed' }, settings: settingsFor(trace, { noticeS: 0 }) })
    assert.ok(killed.requests.replayed > 0)
    assert.ok(killed.addedLatencyS.max >= DEFAULTS.leaseTtlS + DEFAULTS.replayDelayS, 'replayed requests waited for the lease and the replay')
  })

  test('a notice too short for the queue hands the rest off to be replayed', () => {
    const trace = loadTrace('spotserve-g4dn')
    const result = simulate({ trace, shape: { spot: 8, onDemand: 0, policy: 'fixed' }, settings: settingsFor(trace, { capacityRps: 2, rps: 15, noticeS: 10 }) })
    assert.ok(result.requests.replayed > 0)
  })

  test('fallback launches on-demand replicas only when spot runs short', () => {
    const trace = loadTrace('skynomad-gcp-h100', { zone: 'us-west1-b' })
    const settings = settingsFor(trace, { rps: 350 })
    const fixed = simulate({ trace, shape: { spot: 4, onDemand: 0, policy: 'fixed' }, settings })
    const fallback = simulate({ trace, shape: { spot: 4, onDemand: 0, policy: 'fallback' }, settings })
    assert.equal(fixed.counted.fallbackLaunches, 0)
    assert.ok(fallback.counted.fallbackLaunches > 0)
    assert.ok(fallback.availability > fixed.availability)
    assert.ok(fallback.cost.onDemand > 0 && Math.abs(fallback.cost.onDemand - fallback.counted.fallbackHours * trace.prices.onDemand) < 1e-9)
  })
})

describe('the fluid queue', () => {
  test('queues up to its bound, then sheds; each wait is the backlog ahead of it', () => {
    const queue = new FluidQueue(10)
    // 10 req/s against 5 req/s of capacity and room for 20: full after 4 s, then 5 req/s shed for 6 s.
    queue.flow(10, 5, 20)
    assert.equal(queue.backlog, 20)
    assert.ok(Math.abs(queue.shed - 30) < 1e-9)
    assert.ok(Math.abs(queue.waits.total - 70) < 1e-9, 'admitted: 40 while filling, then 5 a second for 6 s')
    assert.ok(Math.abs(queue.waits.maxS - 4) < 1e-9, 'the last ones wait 20 ÷ 5 s')
    // Capacity back to 15 req/s: the 20 queued drain at 5 req/s in 4 s, then no one waits.
    queue.flow(10, 15, 20)
    assert.equal(queue.backlog, 0)
    assert.ok(Math.abs(queue.waits.total - 170) < 1e-9)
    // Waits under a millisecond count as none.
    assert.ok(Math.abs(queue.waits.delayed - 110) < 0.1, `${queue.waits.delayed}`)
  })
})
