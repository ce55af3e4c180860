import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'

// Child processes of the bench: start, wait until they answer, watch their memory, stop.

export { freePort } from '../scripts/lib/process.js'

export interface Child {
  readonly process: ChildProcess
  readonly pid: number
  /** The last lines it wrote, for error messages. */
  tail: () => string
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
  stop: (graceMs?: number) => Promise<void>
}

const running = new Set<ChildProcess>()
process.once('exit', () => { for (const child of running) child.kill('SIGKILL') })

export function startChild (command: string, args: readonly string[], options: SpawnOptions = {}): Child {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options })
  child.once('error', () => {})
  if (child.pid === undefined) throw new Error(`could not start ${command}`)
  running.add(child)
  const lines: string[] = []
  const keep = (chunk: Buffer): void => {
    lines.push(...chunk.toString('utf8').split('\n').filter(Boolean))
    if (lines.length > 200) lines.splice(0, lines.length - 200)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  const exited = new Promise<void>((resolve) => child.once('exit', () => { running.delete(child); resolve() }))
  return {
    process: child,
    pid: child.pid,
    tail: () => lines.slice(-30).join('\n'),
    stop: async (graceMs = 10_000) => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
      await exited
      clearTimeout(timer)
    }
  }
}

/** Polls `url` until it answers 200; fails early when `child` exits. */
export async function waitFor200 (url: string, child: Child, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = 'no answer'
  while (Date.now() < deadline) {
    if (child.process.exitCode !== null || child.process.signalCode !== null) {
      throw new Error(`process exited before ${url} answered\n${child.tail()}`)
    }
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) })
      last = `${response.status} ${await response.text()}`
      if (response.status === 200) return
    } catch (error) {
      last = (error as Error).message
    }
    await sleep(100)
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms (last: ${last})\n${child.tail()}`)
}

/** Resident set size of a process in bytes, from /proc (undefined where there is none). */
export function residentBytes (pid: number): number | undefined {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match === null ? undefined : Number(match[1]) * 1024
  } catch {
    return undefined
  }
}

/** Samples a process's RSS every `everyMs` until stopped; returns the peak seen. */
export function watchResident (pid: number, everyMs = 250): { stop: () => number | undefined } {
  let peak: number | undefined
  const sample = (): void => {
    const rss = residentBytes(pid)
    if (rss !== undefined) peak = Math.max(peak ?? 0, rss)
  }
  sample()
  const timer = setInterval(sample, everyMs)
  return { stop: () => { clearInterval(timer); sample(); return peak } }
}
