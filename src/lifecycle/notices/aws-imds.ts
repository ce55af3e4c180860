import type { Logger } from 'pino'
import { describeError, metadataRequest, type MetadataResponse } from './metadata-request.js'

// The transport of the AWS source: EC2 instance metadata over IMDSv2 (a session token
// on every request). aws.ts turns what it answers into notices.

const TOKEN_PATH = '/latest/api/token'

interface Token {
  readonly value: string
  readonly refreshAt: number
}

export interface ImdsClientOptions {
  readonly baseUrl: string
  /** IMDSv2 session token lifetime, 1..21600 s. */
  readonly tokenTtlSeconds?: number
  readonly requestTimeoutMs: number
  /** Aborts every request when the source stops. */
  readonly signal: AbortSignal
  readonly log: Logger
}

/** GETs from EC2 instance metadata with an IMDSv2 session token, fetched once for concurrent callers and renewed before it expires. */
export class ImdsClient {
  private readonly tokenTtlSeconds: number
  private token: Token | undefined
  private tokenRequest: Promise<Token> | undefined

  constructor (private readonly options: ImdsClientOptions) {
    this.tokenTtlSeconds = Math.min(21600, Math.max(1, Math.floor(options.tokenTtlSeconds ?? 21600)))
  }

  // A missing or expired token gets 401: fetch a new one and retry once, as
  // aws-node-termination-handler does (GETs carry no TTL header to rely on).
  async get (path: string): Promise<MetadataResponse> {
    const token = await this.currentToken()
    const response = await this.request(path, token.value)
    if (response.status !== 401) return response
    this.options.log.debug({ path }, 'IMDS token refused; fetching a new one')
    const fresh = await this.currentToken(token)
    return this.request(path, fresh.value)
  }

  private request (path: string, token: string): Promise<MetadataResponse> {
    return metadataRequest(`${this.options.baseUrl}${path}`, {
      headers: { 'X-aws-ec2-metadata-token': token },
      timeoutMs: this.options.requestTimeoutMs,
      signal: this.options.signal
    })
  }

  /** The session token, fetched once for concurrent callers; `refused` forces a new one unless another caller already replaced it. */
  private async currentToken (refused?: Token): Promise<Token> {
    const token = this.token
    if (token !== undefined && token !== refused && Date.now() < token.refreshAt) return token
    this.tokenRequest ??= this.fetchToken().finally(() => { this.tokenRequest = undefined })
    return this.tokenRequest
  }

  private async fetchToken (): Promise<Token> {
    // The token's lifetime starts when IMDS issues it, before the answer arrives here.
    const askedAt = Date.now()
    let response: MetadataResponse
    try {
      response = await metadataRequest(`${this.options.baseUrl}${TOKEN_PATH}`, {
        method: 'PUT',
        headers: { 'X-aws-ec2-metadata-token-ttl-seconds': String(this.tokenTtlSeconds) },
        timeoutMs: this.options.requestTimeoutMs,
        signal: this.options.signal
      })
    } catch (error) {
      // The token answer has an IP hop limit of 1 by default: from a container on a
      // bridge network it never arrives, and the PUT times out.
      const reason = describeError(error)
      throw new Error(reason === 'timed out'
        ? 'token request timed out (from a container, the instance needs HttpPutResponseHopLimit >= 2)'
        : `token request: ${reason}`)
    }
    const value = response.body.trim()
    if (response.status !== 200 || value === '') throw new Error(`token request answered HTTP ${response.status}`)
    const ttlMs = this.tokenTtlSeconds * 1000
    const token = { value, refreshAt: askedAt + ttlMs - Math.min(60_000, ttlMs / 4) }
    this.token = token
    return token
  }
}
