/**
 * Events in time order; at equal times by `rank` (lower first), then in the order they
 * were scheduled, so a run is the same every time.
 */
export class EventQueue<E extends { readonly atS: number, readonly rank: number }> {
  private readonly heap: Array<{ event: E, seq: number }> = []
  private seq = 0

  get size (): number {
    return this.heap.length
  }

  peek (): E | undefined {
    return this.heap[0]?.event
  }

  push (event: E): void {
    this.heap.push({ event, seq: this.seq++ })
    let i = this.heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.before(i, parent)) break
      this.swap(i, parent)
      i = parent
    }
  }

  pop (): E | undefined {
    const top = this.heap[0]
    if (top === undefined) return undefined
    const last = this.heap.pop() as { event: E, seq: number }
    if (this.heap.length > 0) {
      this.heap[0] = last
      let i = 0
      for (;;) {
        const left = 2 * i + 1
        const right = left + 1
        let first = i
        if (left < this.heap.length && this.before(left, first)) first = left
        if (right < this.heap.length && this.before(right, first)) first = right
        if (first === i) break
        this.swap(i, first)
        i = first
      }
    }
    return top.event
  }

  private before (a: number, b: number): boolean {
    const x = this.heap[a]
    const y = this.heap[b]
    return x.event.atS !== y.event.atS ? x.event.atS < y.event.atS : x.event.rank !== y.event.rank ? x.event.rank < y.event.rank : x.seq < y.seq
  }

  private swap (a: number, b: number): void {
    [this.heap[a], this.heap[b]] = [this.heap[b], this.heap[a]]
  }
}
