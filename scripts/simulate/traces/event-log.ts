import { InputError } from '../input-error.js'
import type { SpotInstance } from '../trace.js'

/**
 * Builds instance lifetimes from add/remove events in file order, refusing what a real
 * trace cannot contain: a time that is not a number of milliseconds, a time before the
 * previous event, an instance added while it is alive, a removal of one never added.
 * Times become seconds from the first event.
 */
/** The longest trace read: longer ones are a unit mistake (seconds of 1e308, microseconds since 1970). */
const MAX_SPAN_MS = 10 * 366 * 24 * 3600 * 1000

export class EventLog {
  private readonly alive = new Map<string, { zone: string, addS: number, order: number }>()
  private readonly done: Array<SpotInstance & { order: number }> = []
  private readonly seen = new Set<string>()
  /** Names reused after a removal, mapped to the unique id of their current instance. */
  private readonly renamed = new Map<string, string>()
  private firstMs: number | undefined
  private lastMs = 0
  private order = 0

  constructor (private readonly file: string) {}

  /** Milliseconds since the first event, checked; `where` names the line for errors. */
  time (value: unknown, where: string): number {
    const ms = typeof value === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(value) ? Number(value) : value
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || ms > Number.MAX_SAFE_INTEGER) {
      throw new InputError(`${this.file}:${where}: bad timestamp ${JSON.stringify(value)} (expected milliseconds, a number >= 0)`)
    }
    if (this.firstMs !== undefined && ms < this.lastMs) {
      throw new InputError(`${this.file}:${where}: timestamp ${ms} is before the previous event's (${this.lastMs}); events must be in time order`)
    }
    this.firstMs ??= ms
    if (ms - this.firstMs > MAX_SPAN_MS) {
      throw new InputError(`${this.file}:${where}: timestamp ${ms} is more than ten years after the first event's (${this.firstMs}); timestamps are milliseconds`)
    }
    this.lastMs = ms
    return (ms - this.firstMs) / 1000
  }

  add (ms: unknown, id: string, where: string, zone = ''): void {
    const addS = this.time(ms, where)
    if (id === '') throw new InputError(`${this.file}:${where}: an add without an instance name`)
    if (this.alive.has(id)) throw new InputError(`${this.file}:${where}: adds ${id}, which is already running`)
    // A name may come back after its removal (a new instance under an old name): it is another instance.
    const key = this.seen.has(id) ? `${id}#${this.order}` : id
    this.seen.add(id)
    this.alive.set(id, { zone, addS, order: this.order++ })
    if (key !== id) this.renamed.set(id, key)
  }

  remove (ms: unknown, id: string, where: string): void {
    const removeS = this.time(ms, where)
    const instance = this.alive.get(id)
    if (instance === undefined) {
      throw new InputError(`${this.file}:${where}: removes ${id}, which ${this.seen.has(id) ? 'was already removed' : 'was never added'}`)
    }
    this.alive.delete(id)
    this.done.push({ id: this.renamed.get(id) ?? id, zone: instance.zone, addS: instance.addS, removeS, order: instance.order })
    this.renamed.delete(id)
  }

  /** The instances, in order of arrival; those still alive run to `endMs` (default: the last event). */
  finish (endMs?: unknown, where = 'end'): { instances: SpotInstance[], spanS: number } {
    if (this.firstMs === undefined) throw new InputError(`${this.file}: no events`)
    const spanS = endMs === undefined ? (this.lastMs - this.firstMs) / 1000 : this.time(endMs, where)
    const all = [...this.done]
    for (const [id, instance] of this.alive) all.push({ id: this.renamed.get(id) ?? id, zone: instance.zone, addS: instance.addS, order: instance.order })
    all.sort((a, b) => a.order - b.order)
    if (spanS <= 0) throw new InputError(`${this.file}: the trace lasts no time (first and last events at ${this.firstMs} ms)`)
    return { instances: all.map(({ order, ...instance }) => instance), spanS }
  }
}
