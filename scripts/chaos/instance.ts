import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, type WriteStream } from 'node:fs'
import { createInterface } from 'node:readline'
import { gatewayEnvironment } from '../lib/gateway-env.js'
import { GATEWAY_ENTRY } from '../lib/paths.js'
import { freePort } from '../lib/process.js'
import { pause } from './util.js'

export { GATEWAY_ENTRY }

export type InstancePhase = 'starting' | 'ready' | 'draining' | 'killed' | 'exited'

export interface InstanceExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly at: number
}

/** Counters scraped from an instance's /metrics: `name{labels}` → value. */
export type CounterSample = Map<string, number>

const TAIL_LINES = 200

/** One `node dist/src/main.js` of the fleet, on 127.0.0.1. */
export class ChaosInstance {
  phase: InstancePhase = 'starting'
  /** When load-balancer traffic stops reaching it (a drain keeps it routable for a moment, as a real LB would). */
  routableUntil = Infinity
  readyAt: number | undefined
  signalledAt: number | undefined
  /** The last /metrics scrape (kept after the process dies: its counters still count for the fleet). */
  counters: CounterSample = new Map()
  readonly exited: Promise<InstanceExit>
  /** Counts read from the instance's own log, which outlives its /metrics (a drained listener closes early). */
  readonly logged = { handedOffAtNotice: 0, handedOffAtDeadline: 0, takeoverInstances: 0, takeoverRequests: 0, replayClaims: 0, leaseLost: 0, gaveUp: 0, batchShardsHandedBack: 0, batchShardsTakenOver: 0 }
  /** When (epoch ms, the log's own time) this instance took over dead instances' work. */
  readonly takeovers: number[] = []
  /** The source of each preemption notice it logged (`aws`, `signal`...). */
  readonly notices: string[] = []
  private readonly tailLines: string[] = []
  private exit: InstanceExit | undefined

  private constructor (readonly name: string, readonly port: number, private readonly child: ChildProcess, readonly startedAt: number, logFile: WriteStream | undefined) {
    for (const stream of [child.stdout, child.stderr]) {
      const lines = createInterface({ input: stream as NodeJS.ReadableStream, crlfDelay: Infinity })
      lines.on('line', (line) => {
        this.tailLines.push(line)
        if (this.tailLines.length > TAIL_LINES) this.tailLines.shift()
        logFile?.write(`${line}\n`)
        if (line.startsWith('{')) this.count(line)
      })
    }
    this.exited = new Promise((resolve) => {
      child.once('close', (code, signal) => {
        this.exit = { code, signal, at: Date.now() }
        if (this.phase !== 'killed') this.phase = 'exited'
        logFile?.end()
        resolve(this.exit)
      })
    })
  }

  static async start (name: string, env: Record<string, string>, cwd: string, logPath?: string, port?: number): Promise<ChaosInstance> {
    port ??= await freePort()
    const childEnv = gatewayEnvironment({ ...env, HOST: '127.0.0.1', PORT: String(port), INSTANCE_ID: name })
    const child = spawn(process.execPath, [GATEWAY_ENTRY], { cwd, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] })
    return new ChaosInstance(name, port, child, Date.now(), logPath === undefined ? undefined : createWriteStream(logPath))
  }

  get url (): string {
    return `http://127.0.0.1:${this.port}`
  }

  get pid (): number | undefined {
    return this.child.pid
  }

  get alive (): boolean {
    return this.exit === undefined
  }

  get exitStatus (): InstanceExit | undefined {
    return this.exit
  }

  /** Whether the harness's load balancer sends it requests now. */
  routable (now = Date.now()): boolean {
    return this.alive && (this.phase === 'ready' || (this.phase === 'draining' && now < this.routableUntil))
  }

  tail (count = 30): string {
    return this.tailLines.slice(-count).join('\n')
  }

  /** Polls /health/ready until 200; false when the process exits or `timeoutMs` passes first. */
  async waitReady (timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline && this.alive && signal?.aborted !== true) {
      try {
        const response = await fetch(`${this.url}/health/ready`, { signal: AbortSignal.timeout(1000) })
        await response.arrayBuffer()
        if (response.status === 200) {
          if (this.phase === 'starting') this.phase = 'ready'
          this.readyAt = Date.now()
          return true
        }
      } catch {}
      await pause(50, signal)
    }
    return false
  }

  /** SIGKILL: a spot machine reclaimed without notice. */
  kill (): void {
    if (!this.alive) return
    this.signalledAt = Date.now()
    this.phase = 'killed'
    this.child.kill('SIGKILL')
  }

  /** SIGTERM: a preemption notice; it drains and exits on its own. */
  terminate (routableForMs: number): void {
    if (!this.alive) return
    this.signalledAt = Date.now()
    this.phase = 'draining'
    this.routableUntil = this.signalledAt + routableForMs
    this.child.kill('SIGTERM')
  }

  /** Resolves with the exit, or SIGKILLs the process after `timeoutMs` and reports that. */
  async waitExit (timeoutMs: number): Promise<{ exit: InstanceExit, forced: boolean }> {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), timeoutMs) })
    const first = await Promise.race([this.exited, late])
    clearTimeout(timer)
    if (first !== 'late') return { exit: first, forced: false }
    this.child.kill('SIGKILL')
    return { exit: await this.exited, forced: true }
  }

  /** Scrapes /metrics and keeps the counters (spotgate_*_total); false when it did not answer. */
  async scrape (): Promise<boolean> {
    if (!this.alive) return false
    try {
      const response = await fetch(`${this.url}/metrics`, { signal: AbortSignal.timeout(2000) })
      const text = await response.text()
      if (response.status !== 200) return false
      this.counters = parseCounters(text)
      return true
    } catch {
      return false
    }
  }

  private count (line: string): void {
    let record: { msg?: unknown, time?: unknown, count?: unknown, instances?: unknown, requests?: unknown, source?: unknown, handedOff?: unknown }
    try {
      record = JSON.parse(line)
    } catch {
      return
    }
    const n = (value: unknown): number => (typeof value === 'number' ? value : 0)
    switch (record.msg) {
      case 'unfinished requests handed off': this.logged.handedOffAtDeadline += n(record.count); break
      case 'took over the unfinished requests of instances whose lease expired':
        this.logged.takeoverInstances += n(record.instances)
        this.logged.takeoverRequests += n(record.requests)
        this.takeovers.push(typeof record.time === 'number' ? record.time : Date.now())
        break
      case 'replaying a handed-off request': this.logged.replayClaims++; break
      case 'preemption notice received': this.notices.push(String(record.source)); break
      case 'replay gave up: marked failed': this.logged.gaveUp++; break
      case 'handed a batch shard back': this.logged.batchShardsHandedBack++; break
      case 'took over a batch shard whose holder went silent': this.logged.batchShardsTakenOver++; break
      default:
        if (typeof record.msg === 'string' && record.msg.startsWith('drain plan for ')) this.logged.handedOffAtNotice += n(record.handedOff)
        if (typeof record.msg === 'string' && record.msg.includes('lease had expired')) this.logged.leaseLost++
    }
  }

  /** Synchronous last resort for process exit handlers. */
  killNow (): void {
    if (this.alive) this.child.kill('SIGKILL')
  }
}

/** `spotgate_…_total{labels} value` lines of a Prometheus text exposition. */
export function parseCounters (text: string): CounterSample {
  const counters: CounterSample = new Map()
  for (const line of text.split('\n')) {
    const match = /^(spotgate_[a-z_]+_total|spotgate_inflight_requests)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line)
    if (match !== null) counters.set(`${match[1]}${match[2] ?? ''}`, Number(match[3]))
  }
  return counters
}
