import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { test } from 'node:test'
import { GatewayProcess } from '../helpers/gateway-process.js'
import { makeRepository } from '../helpers/model-repo.js'

/** Sends raw bytes and returns the whole answer once the server closes the connection. */
function rawExchange (port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes))
    const chunks: Buffer[] = []
    socket.setTimeout(5000, () => socket.destroy(new Error('no answer within 5 s')))
    socket.on('data', (chunk) => chunks.push(chunk))
    socket.on('error', reject)
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')))
  })
}

test('what the HTTP parser refuses is answered as {"error"} naming the problem, and the server stays up', async (t) => {
  const repo = await makeRepository(['fixed'])
  t.after(repo.cleanup)
  const gateway = await GatewayProcess.start(t, { env: { MODEL_REPOSITORY: repo.dir } })
  await gateway.waitReady(30_000)
  const cases: Array<[string, string, RegExp]> = [
    ['a control character in a header', 'GET /health/live HTTP/1.1\r\nHost: x\r\nIdempotency-Key: a\u0001b\r\n\r\n', /^HTTP\/1\.1 400 /],
    ['a request line that is not HTTP', 'GARBAGE\r\n\r\n', /^HTTP\/1\.1 400 /],
    ['headers past the size limit', `GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, /^HTTP\/1\.1 431 /]
  ]
  for (const [what, bytes, status] of cases) {
    const answer = await rawExchange(gateway.port, bytes)
    assert.match(answer, status, what)
    assert.match(answer, /content-type: application\/json/i, what)
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { error: string }
    assert.match(body.error, /^malformed HTTP request: \S/, what)
  }
  assert.equal((await gateway.fetch('/health/live')).status, 200)
})
