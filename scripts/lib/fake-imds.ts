import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A small EC2 instance metadata service (IMDSv2 only) for several instances at once,
 * so a spot interruption can be triggered by hand on one machine or in Docker Compose.
 *
 * Each instance has its own base URL, `<url>/<instance>`, used as its AWS_METADATA_URL:
 *   PUT  /<instance>/latest/api/token                        a session token (TTL header 1..21600, else 400)
 *   GET  /<instance>/latest/meta-data/spot/instance-action   401 without a valid token; 404 until triggered,
 *                                                             then {"action","time"} as real IMDS writes it
 *   GET  /<instance>/latest/meta-data/...                     404 (no rebalance, no ASG lifecycle state)
 * Control endpoints (not part of IMDS):
 *   POST   /_trigger/<instance>[?action=terminate&in=120]   spot notice: `action` in `in` seconds
 *   DELETE /_trigger/<instance>                              withdraw it (to restart the instance afterwards)
 *   GET    /_status                                          notices and when each instance last polled
 */
export class FakeImds {
  private readonly tokens = new Map<string, number>()
  private readonly notices = new Map<string, { action: string, time: string }>()
  private readonly lastPoll = new Map<string, string>()
  private server: Server | undefined

  constructor (private readonly log: (line: string) => void = () => {}) {}

  async start (port = 0, host = '127.0.0.1'): Promise<this> {
    const server = createServer((req, res) => { void this.receive(req, res) })
    server.keepAliveTimeout = 5000
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => resolve())
    })
    this.server = server
    return this
  }

  get port (): number {
    if (this.server === undefined) throw new Error('fake IMDS not started')
    return (this.server.address() as AddressInfo).port
  }

  /** Base URL on loopback, without a trailing slash. */
  get url (): string {
    return `http://127.0.0.1:${this.port}`
  }

  /** AWS_METADATA_URL for one instance. */
  urlFor (instance: string): string {
    return `${this.url}/${instance}`
  }

  /** A spot interruption notice for `instance`: `action` in `inSeconds` (AWS gives about two minutes). */
  trigger (instance: string, action = 'terminate', inSeconds = 120): { action: string, time: string } {
    const notice = { action, time: isoSeconds(Date.now() + inSeconds * 1000) }
    this.notices.set(instance, notice)
    this.log(`spot instance-action for ${instance}: ${action} at ${notice.time}`)
    return notice
  }

  clear (instance: string): void {
    this.notices.delete(instance)
  }

  async close (): Promise<void> {
    const server = this.server
    if (server === undefined) return
    this.server = undefined
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    server.closeAllConnections()
    await closed
  }

  private async receive (req: IncomingMessage, res: ServerResponse): Promise<void> {
    req.resume() // bodies are ignored
    await new Promise((resolve) => req.once('end', resolve))
    const url = new URL(req.url ?? '/', 'http://imds')
    const method = req.method ?? 'GET'
    const control = /^\/_trigger\/([A-Za-z0-9._:-]+)\/?$/.exec(url.pathname)
    if (control !== null) return this.control(method, control[1], url.searchParams, res)
    if (url.pathname === '/_status' && method === 'GET') {
      return send(res, 200, JSON.stringify({ notices: Object.fromEntries(this.notices), lastPoll: Object.fromEntries(this.lastPoll) }, null, 2), 'application/json')
    }
    const imds = /^\/([A-Za-z0-9._:-]+)(\/latest\/.*)$/.exec(url.pathname)
    if (imds === null) return send(res, 404, 'not found')
    const [, instance, path] = imds
    if (path === '/latest/api/token') {
      if (method !== 'PUT') return send(res, 405, '')
      const ttl = Number(req.headers['x-aws-ec2-metadata-token-ttl-seconds'])
      if (!(Number.isInteger(ttl) && ttl >= 1 && ttl <= 21600)) return send(res, 400, '')
      const token = randomBytes(24).toString('base64url')
      this.tokens.set(token, Date.now() + ttl * 1000)
      return send(res, 200, token, 'text/plain', { 'X-aws-ec2-metadata-token-ttl-seconds': String(ttl) })
    }
    if (method !== 'GET') return send(res, 405, '')
    const token = req.headers['x-aws-ec2-metadata-token']
    const expiresAt = typeof token === 'string' ? this.tokens.get(token) : undefined
    if (expiresAt === undefined || expiresAt < Date.now()) return send(res, 401, '')
    if (path !== '/latest/meta-data/spot/instance-action') return send(res, 404, 'Not Found')
    this.lastPoll.set(instance, new Date().toISOString())
    const notice = this.notices.get(instance)
    return notice === undefined ? send(res, 404, 'Not Found') : send(res, 200, JSON.stringify(notice))
  }

  private control (method: string, instance: string, query: URLSearchParams, res: ServerResponse): void {
    if (method === 'DELETE') {
      this.clear(instance)
      return send(res, 200, `${JSON.stringify({ instance, notice: null })}\n`, 'application/json')
    }
    if (method !== 'POST') return send(res, 405, '')
    const action = query.get('action') ?? 'terminate'
    const seconds = Number(query.get('in') ?? 120)
    if (!/^(terminate|stop|hibernate)$/.test(action) || !(seconds >= 0 && seconds <= 3600)) {
      return send(res, 400, 'action: terminate|stop|hibernate; in: 0..3600 seconds\n')
    }
    return send(res, 200, `${JSON.stringify({ instance, notice: this.trigger(instance, action, seconds) })}\n`, 'application/json')
  }
}

function send (res: ServerResponse, status: number, body: string, type = 'text/plain', headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), ...headers })
  res.end(body)
}

/** `2017-09-18T08:22:00Z`: IMDS writes whole seconds. */
function isoSeconds (ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z')
}
