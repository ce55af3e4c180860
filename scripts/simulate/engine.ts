import { EventQueue } from './event-queue.js'
import { replicasNeeded, type FleetShape, type Settings } from './fleet.js'
import { FluidQueue } from './fluid-queue.js'
import type { SpotInstance, Trace } from './trace.js'

// The discrete-event simulation of one fleet over one trace. Events: the trace's
// instances becoming available and being taken back, the notices before that, replicas
// finishing their cold start, hand-offs coming back as replays, the end. Between
// events every rate is constant and the requests move as a fluid (fluid-queue.ts).
// Pure and deterministic: the same input gives the same result.

type ReplicaKind = 'spot' | 'on-demand' | 'fallback'

interface Replica {
  readonly kind: ReplicaKind
  readonly price: number
  readonly launchS: number
  readonly readyS: number
  readonly instance?: SpotInstance
  state: 'launching' | 'ready' | 'draining' | 'gone'
  noticeAtS?: number
}

type Event =
  | { atS: number, rank: 0, kind: 'notice', replica: Replica }
  | { atS: number, rank: 0, kind: 'withdraw', instance: SpotInstance }
  | { atS: number, rank: 1, kind: 'remove', instance: SpotInstance }
  | { atS: number, rank: 2, kind: 'ready', replica: Replica }
  | { atS: number, rank: 3, kind: 'replay', count: number, waitedS: number, handedAtS: number }
  | { atS: number, rank: 4, kind: 'add', instance: SpotInstance, order: number }
  | { atS: number, rank: 9, kind: 'end' }

/** One point of the fleet over time (from this moment to the next point). */
export interface TimelinePoint {
  readonly atS: number
  /** Spot instances the trace has at this moment. */
  readonly offered: number
  /** Spot replicas the fleet holds (launching, serving or draining). */
  readonly spot: number
  readonly onDemand: number
  /** Replicas serving (not starting, not draining). */
  readonly ready: number
  /** What the fleet is billed per hour now. */
  readonly costPerHour: number
}

export interface SimulationResult {
  readonly hours: number
  readonly replicasNeeded: number
  readonly cost: { readonly spot: number, readonly onDemand: number, readonly total: number, readonly allOnDemand: number }
  readonly saving: number
  readonly availability: number
  readonly spotHours: number
  readonly onDemandHours: number
  readonly requests: {
    readonly offered: number
    readonly served: number
    /** Served with added latency: queued behind a shortfall, or replayed. */
    readonly delayed: number
    /** Refused (no ready replica, queues full), or accepted and never served because no replica was left. */
    readonly lost: number
    /** Handed off by a drain that could not finish them, or taken over from a killed replica, then replayed. */
    readonly replayed: number
  }
  readonly addedLatencyS: { readonly p50: number, readonly p99: number, readonly p999: number, readonly max: number }
  /** What the cost and the saving include. */
  readonly counted: {
    readonly spotLaunches: number
    readonly preemptions: number
    readonly fallbackLaunches: number
    readonly fallbackHours: number
    /** Billed replica-hours before serving: cold starts. */
    readonly coldStartHours: number
    /** Billed replica-hours after a notice, while draining. */
    readonly drainingHours: number
    /** Serving replica-hours beyond what the load needs. */
    readonly beyondLoadHours: number
    /** Replica-hours the load needed and no replica served. */
    readonly shortHours: number
  }
  readonly timeline?: readonly TimelinePoint[]
}

export interface SimulationInput {
  readonly trace: Trace
  readonly shape: FleetShape
  readonly settings: Settings
  /** Keep the fleet's timeline (for the chart). */
  readonly timeline?: boolean
}

export function simulate (input: SimulationInput): SimulationResult {
  return new Simulation(input).run()
}

class Simulation {
  private readonly trace: Trace
  private readonly shape: FleetShape
  private readonly settings: Settings
  private readonly need: number
  private readonly events = new EventQueue<Event>()
  private readonly queue: FluidQueue
  private readonly replicas = new Set<Replica>()
  private readonly held = new Map<SpotInstance, Replica>()
  /** Instances the trace offers and the fleet does not hold, with their order in the trace. */
  private readonly spare = new Map<SpotInstance, number>()
  private readonly pendingReplays: Array<{ count: number, waitedS: number, handedAtS: number, atS: number }> = []
  private readonly points: TimelinePoint[] | undefined
  private now = 0
  private aliveInTrace = 0
  private coveredS = 0
  private beyondLoadReplicaS = 0
  private shortReplicaS = 0
  private replayed = 0
  private lostAtEnd = 0
  private readonly bill = { spotCost: 0, spotS: 0, onDemandCost: 0, onDemandS: 0, fallbackS: 0, coldStartS: 0, drainingS: 0 }
  private readonly launches = { spot: 0, fallback: 0 }
  private preemptions = 0

  constructor (input: SimulationInput) {
    this.trace = input.trace
    this.shape = input.shape
    this.settings = input.settings
    this.need = replicasNeeded(input.settings)
    this.queue = new FluidQueue(input.settings.rps)
    this.points = input.timeline === true ? [] : undefined
  }

  run (): SimulationResult {
    const { trace, settings } = this
    trace.instances.forEach((instance, order) => {
      this.events.push({ atS: instance.addS, rank: 4, kind: 'add', instance, order })
      if (instance.removeS === undefined) return
      this.events.push({ atS: instance.removeS, rank: 1, kind: 'remove', instance })
      // Capacity the cloud is already reclaiming cannot be launched on any more; an
      // instance that arrives with less than a notice to live is taken, and noticed at once.
      const doomedS = instance.removeS - settings.noticeS
      if (doomedS > instance.addS) this.events.push({ atS: doomedS, rank: 0, kind: 'withdraw', instance })
    })
    this.events.push({ atS: trace.spanS, rank: 9, kind: 'end' })
    for (let i = 0; i < this.shape.onDemand; i++) this.launch('on-demand', trace.prices.onDemand)
    if ((this.events.peek()?.atS ?? 0) > 0) this.settle()

    for (let event = this.events.pop(); event !== undefined; event = this.events.pop()) {
      this.advance(Math.min(event.atS, trace.spanS))
      if (event.kind === 'end') break
      this.handle(event)
      // The policy acts once everything that happens at this moment has happened.
      if ((this.events.peek()?.atS ?? Infinity) > this.now) this.settle()
    }
    this.finish()

    const hours = trace.spanS / 3600
    const allOnDemand = this.need * trace.prices.onDemand * hours
    const total = this.bill.spotCost + this.bill.onDemandCost
    const waits = this.queue.waits
    const offered = settings.rps * trace.spanS
    const lost = this.queue.shed + this.lostAtEnd
    return {
      hours,
      replicasNeeded: this.need,
      cost: { spot: this.bill.spotCost, onDemand: this.bill.onDemandCost, total, allOnDemand },
      saving: allOnDemand > 0 ? 1 - total / allOnDemand : 0,
      availability: trace.spanS > 0 ? this.coveredS / trace.spanS : 1,
      spotHours: this.bill.spotS / 3600,
      onDemandHours: this.bill.onDemandS / 3600,
      requests: { offered, served: offered - lost, delayed: waits.delayed, lost, replayed: this.replayed },
      addedLatencyS: { p50: waits.quantile(0.5), p99: waits.quantile(0.99), p999: waits.quantile(0.999), max: waits.maxS },
      counted: {
        spotLaunches: this.launches.spot,
        preemptions: this.preemptions,
        fallbackLaunches: this.launches.fallback,
        fallbackHours: this.bill.fallbackS / 3600,
        coldStartHours: this.bill.coldStartS / 3600,
        drainingHours: this.bill.drainingS / 3600,
        beyondLoadHours: this.beyondLoadReplicaS / 3600,
        shortHours: this.shortReplicaS / 3600
      },
      ...(this.points !== undefined && { timeline: this.points })
    }
  }

  private settle (): void {
    this.reconcile()
    this.record()
  }

  private handle (event: Exclude<Event, { kind: 'end' }>): void {
    switch (event.kind) {
      case 'add':
        this.aliveInTrace++
        this.spare.set(event.instance, event.order)
        break
      case 'remove': {
        this.aliveInTrace--
        this.spare.delete(event.instance)
        const replica = this.held.get(event.instance)
        if (replica === undefined) break
        this.preemptions++
        // Without a notice nothing drained: the replica's queue waits for its lease to expire, then is replayed.
        if (replica.state === 'ready') {
          const queued = this.takeShare()
          this.handOff(queued, queued, this.settings.leaseTtlS + this.settings.replayDelayS)
        }
        this.end(replica)
        break
      }
      case 'notice':
        this.drain(event.replica)
        break
      case 'withdraw':
        this.spare.delete(event.instance)
        break
      case 'ready':
        if (event.replica.state === 'launching') {
          event.replica.state = 'ready'
          this.flushReplays()
        }
        break
      case 'replay':
        this.pendingReplays.push(event)
        this.flushReplays()
        break
    }
  }

  /**
   * A notice: the load balancer stops sending new requests; the replica's queue is
   * finished where it fits before the deadline (notice − safety margin) and the rest is
   * handed off at once, as spotgate's drain does.
   */
  private drain (replica: Replica): void {
    if (replica.state === 'draining' || replica.state === 'gone') return
    const wasReady = replica.state === 'ready'
    const queued = wasReady ? this.takeShare() : 0
    replica.state = 'draining'
    replica.noticeAtS = this.now
    const removeS = replica.instance?.removeS ?? this.now
    const fits = this.settings.capacityRps * Math.max(0, removeS - this.now - this.settings.drainMarginS)
    if (queued > fits) this.handOff(queued - fits, queued, this.settings.replayDelayS)
  }

  /** The queue of one ready replica (its share of the fleet's), taken away from the fleet's. */
  private takeShare (): number {
    const ready = this.readyCount()
    return ready > 0 ? this.queue.take(1 / ready) : 0
  }

  /** `count` of the `queued` requests of one replica go to the journal's replay stream. */
  private handOff (count: number, queued: number, delayS: number): void {
    if (count <= 0) return
    // They are the queue's last arrivals: recorded with the longest wait, to be recorded again once replayed.
    const waitedS = queued / this.settings.capacityRps
    this.queue.waits.remove(count, waitedS)
    this.events.push({ atS: this.now + delayS, rank: 3, kind: 'replay', count, waitedS, handedAtS: this.now })
  }

  /** Replays join a ready replica's queue, behind what is queued there; with none ready they wait in the journal. */
  private flushReplays (): void {
    const ready = this.readyCount()
    if (ready === 0) return
    for (const replay of this.pendingReplays.splice(0)) {
      const latency = replay.waitedS + (Math.max(this.now, replay.atS) - replay.handedAtS) + this.queue.backlog / (ready * this.settings.capacityRps)
      this.queue.waits.add(replay.count, latency)
      this.queue.backlog += replay.count
      this.replayed += replay.count
    }
  }

  /** The fleet policy: hold up to `spot` spot replicas, and with `fallback` cover a shortfall with on-demand ones. */
  private reconcile (): void {
    const spot = [...this.replicas].filter((r) => r.kind === 'spot')
    let active = spot.filter((r) => r.state === 'launching' || r.state === 'ready').length
    while (active < this.shape.spot && this.spare.size > 0) {
      this.acquire(this.cheapestSpare())
      active++
    }
    if (this.shape.policy !== 'fallback') return
    const readySpot = [...this.replicas].filter((r) => r.kind === 'spot' && r.state === 'ready').length
    const launchUpTo = Math.max(0, this.need - this.shape.onDemand - active)
    const keepUpTo = Math.max(0, this.need - this.shape.onDemand - readySpot)
    const fallback = [...this.replicas].filter((r) => r.kind === 'fallback')
    for (let n = fallback.length; n < launchUpTo; n++) this.launch('fallback', this.trace.prices.onDemand)
    if (fallback.length > keepUpTo) {
      // Release the ones still starting first (they serve nobody yet), newest first.
      const order = fallback.sort((a, b) => (a.state === 'launching' ? 0 : 1) - (b.state === 'launching' ? 0 : 1) || b.launchS - a.launchS)
      for (const replica of order.slice(0, fallback.length - keepUpTo)) this.end(replica)
    }
  }

  /** The spare instance in the cheapest zone; among equals, the one the trace has had longest. */
  private cheapestSpare (): SpotInstance {
    let best: SpotInstance | undefined
    let bestPrice = Infinity
    let bestOrder = Infinity
    for (const [instance, order] of this.spare) {
      const price = this.spotPrice(instance)
      if (price < bestPrice || (price === bestPrice && order < bestOrder)) {
        best = instance
        bestPrice = price
        bestOrder = order
      }
    }
    return best as SpotInstance
  }

  private spotPrice (instance: SpotInstance): number {
    return this.trace.prices.spot.get(instance.zone) ?? Infinity
  }

  private acquire (instance: SpotInstance): void {
    this.spare.delete(instance)
    const replica = this.launch('spot', this.spotPrice(instance), instance)
    this.held.set(instance, replica)
    if (instance.removeS !== undefined && this.settings.noticeS > 0) {
      this.events.push({ atS: Math.max(this.now, instance.removeS - this.settings.noticeS), rank: 0, kind: 'notice', replica })
    }
  }

  /** A new replica, billed from now; serving after the cold start, or at once when the trace starts (the fleet is already running). */
  private launch (kind: ReplicaKind, price: number, instance?: SpotInstance): Replica {
    const warm = this.now === 0
    const replica: Replica = { kind, price, instance, launchS: this.now, readyS: warm ? 0 : this.now + this.settings.coldStartS, state: warm ? 'ready' : 'launching' }
    this.replicas.add(replica)
    if (kind === 'spot') this.launches.spot++
    if (kind === 'fallback') this.launches.fallback++
    if (!warm) this.events.push({ atS: replica.readyS, rank: 2, kind: 'ready', replica })
    return replica
  }

  private end (replica: Replica): void {
    if (replica.state === 'gone') return
    const billedS = this.now - replica.launchS
    const cost = billedS * replica.price / 3600
    if (replica.kind === 'spot') {
      this.bill.spotS += billedS
      this.bill.spotCost += cost
      if (replica.instance !== undefined) this.held.delete(replica.instance)
    } else {
      this.bill.onDemandS += billedS
      this.bill.onDemandCost += cost
      if (replica.kind === 'fallback') this.bill.fallbackS += billedS
    }
    const servingFromS = Math.min(this.now, replica.readyS)
    this.bill.coldStartS += servingFromS - replica.launchS
    if (replica.noticeAtS !== undefined) this.bill.drainingS += Math.max(0, this.now - Math.max(replica.noticeAtS, servingFromS))
    replica.state = 'gone'
    this.replicas.delete(replica)
  }

  private readyCount (): number {
    let ready = 0
    for (const replica of this.replicas) if (replica.state === 'ready') ready++
    return ready
  }

  private advance (toS: number): void {
    const seconds = toS - this.now
    if (seconds <= 0) return
    const ready = this.readyCount()
    const capacity = ready * this.settings.capacityRps
    if (capacity >= this.settings.rps - 1e-9) this.coveredS += seconds
    this.beyondLoadReplicaS += Math.max(0, ready - this.need) * seconds
    this.shortReplicaS += Math.max(0, this.need - ready) * seconds
    this.queue.flow(seconds, capacity, ready * this.settings.queuePerReplica)
    this.now = toS
  }

  private record (): void {
    if (this.points === undefined) return
    let spot = 0
    let onDemand = 0
    let costPerHour = 0
    for (const replica of this.replicas) {
      if (replica.kind === 'spot') spot++
      else onDemand++
      costPerHour += replica.price
    }
    const point = { atS: this.now, offered: this.aliveInTrace, spot, onDemand, ready: this.readyCount(), costPerHour }
    if (this.points.at(-1)?.atS === this.now) this.points[this.points.length - 1] = point
    else this.points.push(point)
  }

  /**
   * The end of the trace: replays still pending (or still on their way) are served if a
   * replica is left, else lost; everything is billed to here.
   */
  private finish (): void {
    this.now = this.trace.spanS
    for (let event = this.events.pop(); event !== undefined; event = this.events.pop()) {
      if (event.kind === 'replay') this.pendingReplays.push(event)
    }
    this.flushReplays()
    for (const replay of this.pendingReplays.splice(0)) this.lostAtEnd += replay.count
    for (const replica of [...this.replicas]) this.end(replica)
  }
}
