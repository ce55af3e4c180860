/** What a metadata service answered. */
export interface MetadataResponse {
  readonly status: number
  readonly headers: Headers
  readonly body: string
}

export interface MetadataRequestOptions {
  readonly method?: 'GET' | 'PUT' | 'POST'
  readonly headers?: Record<string, string>
  readonly body?: string
  /** The whole exchange, body included, must end within this. */
  readonly timeoutMs: number
  /** Aborts the request when the source stops. */
  readonly signal: AbortSignal
}

// Metadata answers are a few hundred bytes; a service answering megabytes is broken.
const MAX_BODY_BYTES = 1024 * 1024

/** One HTTP exchange with a metadata service; throws on a network error, a timeout, an abort or an oversized body. */
export async function metadataRequest (url: string, options: MetadataRequestOptions): Promise<MetadataResponse> {
  const controller = new AbortController()
  // Combined by hand: AbortSignal.any() on a signal that lives as long as the source
  // keeps every derived signal reachable on some Node 20 releases.
  const onStop = () => controller.abort(options.signal.reason)
  const timeout = AbortSignal.timeout(options.timeoutMs)
  const onTimeout = () => controller.abort(timeout.reason)
  if (options.signal.aborted) onStop()
  options.signal.addEventListener('abort', onStop, { once: true })
  timeout.addEventListener('abort', onTimeout, { once: true })
  try {
    const response = await fetch(url, {
      method: options.method ?? 'GET',
      headers: options.headers,
      body: options.body,
      redirect: 'manual',
      signal: controller.signal
    })
    return { status: response.status, headers: response.headers, body: await readBody(response) }
  } finally {
    options.signal.removeEventListener('abort', onStop)
    timeout.removeEventListener('abort', onTimeout)
  }
}

async function readBody (response: Response): Promise<string> {
  if (response.body === null) return ''
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of response.body) {
    size += chunk.byteLength
    if (size > MAX_BODY_BYTES) throw new Error(`answer larger than ${MAX_BODY_BYTES} bytes`)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** A one-line reason for logs: fetch hides the useful part (ECONNREFUSED, a timeout) in `cause`. */
export function describeError (error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  if (error.name === 'TimeoutError') return 'timed out'
  const cause = (error as { cause?: unknown }).cause
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code
    return `${error.message}: ${typeof code === 'string' ? code : cause.message}`
  }
  return error.message
}
