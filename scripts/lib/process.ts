import { spawn, type ChildProcess } from 'node:child_process'
import { accessSync, constants, createWriteStream, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { delimiter, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

// Small process helpers for the scripts that run a fleet on one machine (`npm run fleet`)
// and for the tests that put HAProxy in front of real gateways.

/** Debian puts daemons in sbin, which a non-root PATH often lacks. */
const EXTRA_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin']

/** Absolute path of an executable on PATH (or in sbin), or undefined. */
export function findBinary (name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...EXTRA_DIRS]
  for (const dir of dirs) {
    const path = join(dir, name)
    try {
      accessSync(path, constants.X_OK)
      return path
    } catch {}
  }
  return undefined
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

const handedOut = new Set<number>()

/** The lowest port the kernel hands out to outgoing connections (Linux: ip_local_port_range). */
function ephemeralLow (): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768
  } catch {
    return 32768
  }
}

/**
 * A free port below the kernel's ephemeral range, for a server that is killed and started
 * again on the same port: an ephemeral port could meanwhile be taken by some outgoing
 * connection. Never the same port twice in one process.
 */
export async function stablePort (): Promise<number> {
  const low = 10_000
  const high = Math.max(low + 1000, ephemeralLow())
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low))
    if (handedOut.has(port)) continue
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer()
      server.once('error', () => resolve(false))
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
    })
    if (free) {
      handedOut.add(port)
      return port
    }
  }
  return freePort()
}

/** Polls `check` every `everyMs` until it returns true; false when `timeoutMs` passes first. */
export async function waitUntil (check: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    try {
      if (await check()) return true
    } catch {}
    await sleep(everyMs)
  }
  return false
}

export interface ExitStatus {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

// Whatever happens to the script (an exception, process.exit), no child outlives it.
const alive = new Set<ChildProcess>()
process.once('exit', () => { for (const child of alive) child.kill('SIGKILL') })

/** A child process whose stdout and stderr go to a log file. */
export class Child {
  readonly exited: Promise<ExitStatus>
  private readonly child: ChildProcess
  private status: ExitStatus | undefined

  constructor (readonly name: string, command: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv, cwd?: string, logFile: string }) {
    const log = createWriteStream(options.logFile, { flags: 'a' })
    // A process group of its own: a terminal's Ctrl-C reaches only the script, which then
    // stops its children in order (HAProxy, then the gateways' drains, then Redis).
    const child = spawn(command, args, { env: options.env ?? process.env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    child.stdout.pipe(log, { end: false })
    child.stderr.pipe(log, { end: false })
    alive.add(child)
    this.child = child
    this.exited = new Promise((resolve) => {
      child.once('error', (error) => {
        log.write(`${name}: ${error.message}\n`)
        this.status = { code: 127, signal: null }
        resolve(this.status)
      })
      child.once('close', (code, signal) => {
        alive.delete(child)
        log.end()
        this.status ??= { code, signal }
        resolve(this.status)
      })
    })
  }

  get pid (): number | undefined {
    return this.child.pid
  }

  get exitStatus (): ExitStatus | undefined {
    return this.status
  }

  get running (): boolean {
    return this.status === undefined
  }

  signal (name: NodeJS.Signals): void {
    if (this.running) this.child.kill(name)
  }

  /** `signal`, then SIGKILL if it is still running after `graceMs`. */
  async stop (signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<ExitStatus> {
    if (!this.running) return this.exited
    this.child.kill(signal)
    const late = sleep(graceMs).then(() => 'late' as const)
    if (await Promise.race([this.exited, late]) === 'late') this.child.kill('SIGKILL')
    return this.exited
  }
}

/** GET `url`; true on a 200. Never throws. */
export async function answers200 (url: string, timeoutMs = 1000): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
    await response.arrayBuffer()
    return response.status === 200
  } catch {
    return false
  }
}

/** `name{labels} value` → value, for every sample of a Prometheus text exposition whose name starts with `prefix`. */
export function parseSamples (text: string, prefix = 'spotgate_'): Map<string, number> {
  const samples = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (!line.startsWith(prefix)) continue
    const space = line.lastIndexOf(' ')
    samples.set(line.slice(0, space), Number(line.slice(space + 1)))
  }
  return samples
}

/** Sum of every sample of `name` whose labels include all of `labels` (e.g. `outcome="done"`). */
export function sumSamples (samples: Map<string, number>, name: string, ...labels: string[]): number {
  let sum = 0
  for (const [key, value] of samples) {
    const brace = key.indexOf('{')
    const base = brace === -1 ? key : key.slice(0, brace)
    if (base === name && labels.every((label) => key.includes(label))) sum += value
  }
  return sum
}
