interface Waiting<I, O> {
  readonly item: I
  readonly resolve: (value: O) => void
  readonly reject: (error: Error) => void
}

/**
 * Gathers the calls made during one event-loop turn into one flush, so the
 * journal costs one script call per turn rather than one per request.
 */
export class GroupCommit<I, O> {
  private waiting: Array<Waiting<I, O>> = []
  private scheduled = false

  constructor (private readonly flush: (items: I[]) => Promise<O[]>, private readonly maxGroup = 256) {}

  add (item: I): Promise<O> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ item, resolve, reject })
      if (!this.scheduled) {
        this.scheduled = true
        setImmediate(() => this.run())
      }
    })
  }

  private run (): void {
    this.scheduled = false
    const all = this.waiting
    this.waiting = []
    for (let i = 0; i < all.length; i += this.maxGroup) {
      const group = all.slice(i, i + this.maxGroup)
      this.flush(group.map((w) => w.item)).then(
        (results) => group.forEach((w, index) => w.resolve(results[index])),
        (error: Error) => group.forEach((w) => w.reject(error))
      )
    }
  }
}
