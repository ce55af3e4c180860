import type { Socket } from 'node:net'
import type { ConnectionError } from 'fastify'

/** HTTP status and text for what Node's parser refused before Fastify saw a request. */
function statusOf (code: string | undefined): [number, string] {
  if (code === 'HPE_HEADER_OVERFLOW') return [431, 'Request Header Fields Too Large']
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return [408, 'Request Timeout']
  return [400, 'Bad Request']
}

/**
 * Answers a request Node's HTTP parser refused (a control character in a header, a
 * malformed request line, headers too large) in the same `{"error": "..."}` form as
 * every other refusal, naming what the parser found, and closes the connection.
 */
export function answerClientError (error: ConnectionError, socket: Socket): void {
  if (error.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy()
    return
  }
  const [status, text] = statusOf(error.code)
  const detail = error.message.replace(/^Parse Error:\s*/, '')
  const body = JSON.stringify({ error: `malformed HTTP request: ${detail}` })
  socket.end(`HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
}
