import { spawn, type ChildProcess } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { gatewayEnvironment } from '../../scripts/lib/gateway-env.js'
import { GATEWAY_ENTRY } from '../../scripts/lib/paths.js'
import type { Cleanup } from './app.js'
import { freePort } from './ports.js'

export { GATEWAY_ENTRY }

/** Defaults for a test gateway: loopback, CPU, no cloud metadata traffic, JSON logs at info. */
const DEFAULT_ENV: Record<string, string> = {
  HOST: '127.0.0.1',
  LOG_LEVEL: 'info',
  EXECUTION_PROVIDERS: 'cpu',
  PREEMPTION_SOURCES: 'none',
  MODEL_INSTANCES: '1'
}

export interface GatewayOptions {
  /** Over the defaults; a value of `undefined` removes the variable. PORT defaults to a free port. */
  readonly env?: Record<string, string | undefined>
  /** Extra arguments after the entry script. */
  readonly args?: readonly string[]
  /** Node options before the entry script, e.g. `--inspect`. */
  readonly nodeArgs?: readonly string[]
  /** Working directory; default an empty temporary one, so no stray `.env` is read. */
  readonly cwd?: string
  readonly entry?: string
  /** Starts the gateway in a process group of its own, so `signalGroup` reaches it and its children as a terminal's Ctrl-C does. */
  readonly ownProcessGroup?: boolean
}

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/** One line the process wrote; `json` is set when it is a JSON object (a pino log record). */
export interface LogLine {
  readonly stream: 'stdout' | 'stderr'
  readonly text: string
  readonly json?: Record<string, unknown>
  readonly at: number
}

// A test process that dies (a failed assertion outside a test, the runner's timeout)
// must not leave gateways behind.
const running = new Set<ChildProcess>()
process.once('exit', () => { for (const child of running) child.kill('SIGKILL') })

export type LogMatcher = string | RegExp | ((line: LogLine) => boolean)

function matches (line: LogLine, matcher: LogMatcher): boolean {
  if (typeof matcher === 'function') return matcher(line)
  if (typeof matcher === 'string') return line.json?.msg === matcher || line.text.includes(matcher)
  return matcher.test(line.text)
}

/**
 * A real `node dist/src/main.js` on 127.0.0.1, for tests of what only a process
 * shows: signals, exit codes, start-up errors, event-loop behaviour over real HTTP.
 * It is SIGKILLed when the test that started it ends, if still running.
 */
export class GatewayProcess {
  readonly lines: LogLine[] = []
  readonly exited: Promise<Exit>
  private readonly events = new EventEmitter()
  private exit: Exit | undefined

  private constructor (readonly child: ChildProcess, readonly port: number, readonly env: Readonly<Record<string, string>>) {
    this.events.setMaxListeners(0)
    for (const stream of ['stdout', 'stderr'] as const) {
      const lines = createInterface({ input: child[stream] as NodeJS.ReadableStream, crlfDelay: Infinity })
      lines.on('line', (text) => this.record(stream, text))
    }
    this.exited = new Promise((resolve) => {
      // 'close' comes after the streams have ended, so every line is recorded by then.
      child.once('close', (code, signal) => {
        this.exit = { code, signal }
        this.events.emit('exit', this.exit)
        resolve(this.exit)
      })
    })
  }

  static async start (t: Cleanup, options: GatewayOptions = {}): Promise<GatewayProcess> {
    const port = options.env?.PORT !== undefined ? Number(options.env.PORT) : await freePort()
    const env = gatewayEnvironment({ ...DEFAULT_ENV, PORT: String(port) })
    for (const [key, value] of Object.entries(options.env ?? {})) {
      if (value === undefined) delete env[key]
      else env[key] = value
    }
    let scratch: string | undefined
    if (options.cwd === undefined) scratch = mkdtempSync(join(tmpdir(), 'spotgate-cwd-'))
    const child = spawn(process.execPath, [...(options.nodeArgs ?? []), options.entry ?? GATEWAY_ENTRY, ...(options.args ?? [])], {
      cwd: options.cwd ?? scratch,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: options.ownProcessGroup === true
    })
    const gateway = new GatewayProcess(child, port, env)
    running.add(child)
    void gateway.exited.then(() => running.delete(child))
    t.after(async () => {
      await gateway.kill()
      if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true })
    })
    return gateway
  }

  get url (): string {
    return `http://127.0.0.1:${this.port}`
  }

  get pid (): number | undefined {
    return this.child.pid
  }

  /** Set once the process has exited. */
  get exitStatus (): Exit | undefined {
    return this.exit
  }

  get stdout (): string[] {
    return this.lines.filter((l) => l.stream === 'stdout').map((l) => l.text)
  }

  get stderr (): string[] {
    return this.lines.filter((l) => l.stream === 'stderr').map((l) => l.text)
  }

  /** Parsed pino records, in order. */
  get logs (): Array<Record<string, unknown>> {
    return this.lines.flatMap((l) => (l.json !== undefined ? [l.json] : []))
  }

  /** The last lines, for assertion messages. */
  tail (count = 20): string {
    return this.lines.slice(-count).map((l) => `[${l.stream}] ${l.text}`).join('\n')
  }

  fetch (path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`${this.url}${path}`, { signal: AbortSignal.timeout(10_000), ...init })
  }

  /** POSTs a JSON body. */
  post (path: string, body: unknown, init: RequestInit = {}): Promise<Response> {
    return this.fetch(path, {
      method: 'POST',
      ...init,
      headers: { 'content-type': 'application/json', ...(init.headers as Record<string, string> | undefined) },
      body: JSON.stringify(body)
    })
  }

  /** Resolves with the first line (already written or still to come) that matches. */
  waitForLog (matcher: LogMatcher, timeoutMs = 10_000): Promise<LogLine> {
    const found = this.lines.find((line) => matches(line, matcher))
    if (found !== undefined) return Promise.resolve(found)
    return new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer)
        this.events.off('line', onLine)
        this.events.off('exit', onExit)
      }
      const onLine = (line: LogLine): void => { if (matches(line, matcher)) { done(); resolve(line) } }
      const onExit = (exit: Exit): void => {
        done()
        reject(new Error(`gateway exited (${JSON.stringify(exit)}) before logging ${String(matcher)}\n${this.tail()}`))
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`no log line matching ${String(matcher)} within ${timeoutMs} ms\n${this.tail()}`))
      }, timeoutMs)
      this.events.on('line', onLine)
      this.events.on('exit', onExit)
      if (this.exit !== undefined) onExit(this.exit)
    })
  }

  /** Polls GET /health/ready until it answers 200; fails if the process exits first. */
  async waitReady (timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    let last = 'no answer'
    while (Date.now() < deadline) {
      if (this.exit !== undefined) throw new Error(`gateway exited (${JSON.stringify(this.exit)}) before it was ready\n${this.tail()}`)
      try {
        const response = await fetch(`${this.url}/health/ready`, { signal: AbortSignal.timeout(1000) })
        last = `${response.status} ${await response.text()}`
        if (response.status === 200) return
      } catch (error) {
        last = (error as Error).message
      }
      await sleep(50)
    }
    throw new Error(`gateway not ready within ${timeoutMs} ms (last: ${last})\n${this.tail()}`)
  }

  signal (name: NodeJS.Signals): void {
    if (this.exit === undefined) this.child.kill(name)
  }

  /** Signals every process of the gateway's group (started with `ownProcessGroup`). */
  signalGroup (name: NodeJS.Signals): void {
    if (this.exit === undefined && this.child.pid !== undefined) process.kill(-this.child.pid, name)
  }

  /** Resolves with the exit status, or rejects when the process is still running after `timeoutMs`. */
  async waitExit (timeoutMs = 10_000): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`gateway still running after ${timeoutMs} ms\n${this.tail()}`)), timeoutMs)
    })
    try {
      return await Promise.race([this.exited, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  /** SIGKILL, if still running, and wait for the exit. */
  async kill (): Promise<Exit> {
    if (this.exit === undefined) this.child.kill('SIGKILL')
    return this.exited
  }

  private record (stream: 'stdout' | 'stderr', text: string): void {
    let json: Record<string, unknown> | undefined
    if (text.startsWith('{')) {
      try {
        const parsed: unknown = JSON.parse(text)
        if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) json = parsed as Record<string, unknown>
      } catch {}
    }
    const line: LogLine = { stream, text, at: Date.now(), ...(json !== undefined && { json }) }
    this.lines.push(line)
    this.events.emit('line', line)
  }
}
