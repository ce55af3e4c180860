import { Unavailable } from '../../errors.js'
import { JournalUnavailableError } from '../../journal/journal.js'

/** OpenAI's cursor page: `data` after the object `after`, at most `limit`, and whether more follow; the route's schema checked both. */
export function listPage<T extends { id: string }> (items: readonly T[], query: { after?: string, limit?: string }, defaultLimit: number): { object: 'list', data: T[], first_id: string | null, last_id: string | null, has_more: boolean } {
  const limit = pageSize(query.limit, defaultLimit)
  let start = 0
  if (query.after !== undefined) {
    start = items.findIndex((item) => item.id === query.after) + 1
    if (start === 0) return page([], false)
  }
  const data = items.slice(start, start + limit)
  return page(data, items.length > start + limit)
}

export function page<T extends { id: string }> (data: T[], hasMore: boolean): { object: 'list', data: T[], first_id: string | null, last_id: string | null, has_more: boolean } {
  return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: hasMore }
}

/** The `limit` of a query its route's schema accepted (schemas.ts), or the route's default. */
export function pageSize (raw: string | undefined, fallback: number): number {
  return raw === undefined ? fallback : Number(raw)
}

/** A batch store call; Redis being unreachable is a 503, as for inference. */
export async function storeCall<T> (call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (error) {
    if (error instanceof JournalUnavailableError) throw new Unavailable(error.message)
    throw error
  }
}
