import type { Registry } from 'prom-client'

// Counters, gauges and histograms for the request path. prom-client hashes the label
// values on every observation, children included (about a microsecond each, and a
// request makes several); these keep one child per label set, created once and held by
// whoever observes (a model version holds its own), and hand prom-client plain numbers
// when /metrics is scraped. The output is the same text prom-client writes.

type LabelValues = Record<string, string>

interface MetricValue {
  value: number
  labels: LabelValues
  metricName?: string
}

interface CollectableMetric {
  readonly name: string
  readonly help: string
  readonly type: 'counter' | 'gauge' | 'histogram'
  readonly aggregator: 'sum'
  get: () => Promise<{ name: string, help: string, type: string, aggregator: 'sum', values: MetricValue[] }>
  reset: () => void
}

abstract class Family<Child> implements CollectableMetric {
  readonly aggregator = 'sum' as const
  abstract readonly type: 'counter' | 'gauge' | 'histogram'
  protected readonly children = new Map<string, { labels: LabelValues, child: Child }>()

  constructor (readonly name: string, readonly help: string, private readonly labelNames: readonly string[], registry: Registry) {
    registry.registerMetric(this as never)
  }

  /** The child of these label values (in `labelNames` order), created on first use: keep it, it is the fast path. */
  child (...values: string[]): Child {
    const key = values.join('\u0000')
    let entry = this.children.get(key)
    if (entry === undefined) {
      const labels: LabelValues = {}
      this.labelNames.forEach((name, i) => { labels[name] = values[i] ?? '' })
      entry = { labels, child: this.create() }
      this.children.set(key, entry)
    }
    return entry.child
  }

  async get (): Promise<{ name: string, help: string, type: string, aggregator: 'sum', values: MetricValue[] }> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.values() }
  }

  reset (): void {
    this.children.clear()
  }

  protected abstract create (): Child
  protected abstract values (): MetricValue[]
}

export class CounterChild {
  value = 0
  inc (by = 1): void {
    this.value += by
  }
}

export class FastCounter extends Family<CounterChild> {
  readonly type = 'counter' as const

  protected create (): CounterChild {
    return new CounterChild()
  }

  protected values (): MetricValue[] {
    return [...this.children.values()].map(({ labels, child }) => ({ value: child.value, labels }))
  }
}

export class GaugeChild {
  value = 0
  inc (): void {
    this.value++
  }

  dec (): void {
    this.value--
  }

  set (value: number): void {
    this.value = value
  }
}

export class FastGauge extends Family<GaugeChild> {
  readonly type = 'gauge' as const

  protected create (): GaugeChild {
    return new GaugeChild()
  }

  protected values (): MetricValue[] {
    return [...this.children.values()].map(({ labels, child }) => ({ value: child.value, labels }))
  }
}

export class HistogramChild {
  /** Observations per bucket (not cumulative); the last slot counts those above every bound. */
  readonly counts: Float64Array
  sum = 0
  count = 0

  constructor (private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1)
  }

  observe (value: number): void {
    const { bounds } = this
    let i = 0
    while (i < bounds.length && value > bounds[i]) i++
    this.counts[i]++
    this.sum += value
    this.count++
  }
}

export class FastHistogram extends Family<HistogramChild> {
  readonly type = 'histogram' as const

  constructor (name: string, help: string, labelNames: readonly string[], private readonly buckets: readonly number[], registry: Registry) {
    super(name, help, labelNames, registry)
  }

  protected create (): HistogramChild {
    return new HistogramChild(this.buckets)
  }

  protected values (): MetricValue[] {
    const out: MetricValue[] = []
    for (const { labels, child } of this.children.values()) {
      let cumulative = 0
      this.buckets.forEach((bound, i) => {
        cumulative += child.counts[i]
        out.push({ value: cumulative, labels: { le: String(bound), ...labels }, metricName: `${this.name}_bucket` })
      })
      out.push({ value: child.count, labels: { le: '+Inf', ...labels }, metricName: `${this.name}_bucket` })
      out.push({ value: child.sum, labels, metricName: `${this.name}_sum` })
      out.push({ value: child.count, labels, metricName: `${this.name}_count` })
    }
    return out
  }
}
