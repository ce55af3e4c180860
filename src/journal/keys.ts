/**
 * Redis key schema (documented in docs/journal.md). Every key of a namespace shares
 * one hash tag, so Lua scripts may touch any of them, on a single node or Redis Cluster.
 */
export function journalKeys (namespace: string) {
  const base = `spotgate:{${namespace}}`
  return {
    requestPrefix: `${base}:req:`,
    request: (id: string) => `${base}:req:${id}`,
    leases: `${base}:leases`,
    replayGroup: 'replayers',
    ownedPrefix: `${base}:owned:`,
    owned: (instance: string) => `${base}:owned:${instance}`,
    channelPrefix: `${base}:final:`,
    channel: (id: string) => `${base}:final:${id}`,
    replayStream: `${base}:replay`
  }
}

export type JournalKeys = ReturnType<typeof journalKeys>
