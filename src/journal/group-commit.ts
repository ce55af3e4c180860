interface Waiting<I, O> {
  readonly item: I
  readonly resolve: (value: O) => void
  readonly reject: (error: Error) => void
}

/** A flush's outcome for one item that failed while others of its group did not. */
export class ItemFailure {
  constructor (readonly cause: Error) {}
}

/**
 * Gathers the calls made during one event-loop turn into one flush, so the
 * journal costs one script call per turn rather than one per request. A flush
 * that rejects fails its whole group; one that returns an ItemFailure in an
 * item's place fails that item alone.
 */
export class GroupCommit<I, O> {
  private waiting: Array<Waiting<I, O>> = []
  private scheduled = false

  constructor (private readonly flush: (items: I[]) => Promise<Array<O | ItemFailure>>, private readonly maxGroup = 256) {}

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
        (results) => group.forEach((w, index) => {
          const result = results[index]
          if (result instanceof ItemFailure) w.reject(result.cause)
          else w.resolve(result)
        }),
        (error: Error) => group.forEach((w) => w.reject(error))
      )
    }
  }
}
