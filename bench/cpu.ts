import { readFileSync } from 'node:fs'

// CPU time of the bench's processes and of the whole machine, read from /proc, so a
// report can say where the cores went and how much other work disturbed a figure.

const CLOCK_TICKS_PER_SECOND = 100

/** Busy CPU time of the whole machine (every core, every process), in seconds. */
export function machineCpuSeconds (): number | undefined {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal: everything but idle and iowait is busy.
    const busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + (fields[7] ?? 0)
    return busy / CLOCK_TICKS_PER_SECOND
  } catch {
    return undefined
  }
}

/** CPU time (user + system) of a process, or of one of its threads, in seconds; pid 0: the whole machine. */
export function cpuSeconds (pid: number, tid?: number): number | undefined {
  if (pid === 0) return machineCpuSeconds()
  try {
    const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8')
    // Fields after the command name (which may hold spaces) start at state, field 3.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND
  } catch {
    return undefined
  }
}

export interface CpuSample { readonly atUs: number, readonly seconds: Record<string, number | undefined> }

/**
 * Samples the CPU time of named processes (or threads) on the monotonic clock, so the
 * share of each in a window measured elsewhere can be read afterwards.
 */
export function watchCpu (everyMs = 200): {
  add: (name: string, pid: number, tid?: number) => void
  /** One name for the sum of several threads of a process (e.g. its model workers). */
  addThreads: (name: string, pid: number, tids: readonly number[]) => void
  /** One name for the sum of several processes (e.g. the gateway and its model instance processes). */
  addProcesses: (name: string, pids: readonly number[]) => void
  stop: () => void
  /** Percent of one core each used within the window; interpolated between samples. */
  usage: (window: { startUs: number, endUs: number }) => Record<string, number>
} {
  const targets = new Map<string, { pid: number, tids?: readonly number[], pids?: readonly number[] }>()
  const samples: CpuSample[] = []
  const read = (pid: number, tids: readonly number[] | undefined): number | undefined => {
    if (tids === undefined) return cpuSeconds(pid)
    let sum = 0
    for (const tid of tids) {
      const seconds = cpuSeconds(pid, tid)
      if (seconds === undefined) return undefined
      sum += seconds
    }
    return sum
  }
  const sample = (): void => {
    const seconds: Record<string, number | undefined> = {}
    for (const [name, { pid, tids, pids }] of targets) {
      seconds[name] = pids === undefined ? read(pid, tids) : pids.reduce((sum: number | undefined, p) => (sum === undefined ? undefined : sum + (cpuSeconds(p) ?? 0)), 0)
    }
    samples.push({ atUs: Number(process.hrtime.bigint() / 1000n), seconds })
  }
  const timer = setInterval(sample, everyMs)
  const at = (name: string, us: number): number | undefined => {
    const known = samples.filter((s) => s.seconds[name] !== undefined)
    const after = known.findIndex((s) => s.atUs >= us)
    if (after <= 0) return known[after === 0 ? 0 : known.length - 1]?.seconds[name]
    const a = known[after - 1]
    const b = known[after]
    const f = (us - a.atUs) / (b.atUs - a.atUs)
    return (a.seconds[name] as number) + f * ((b.seconds[name] as number) - (a.seconds[name] as number))
  }
  return {
    add: (name, pid, tid) => { targets.set(name, { pid, ...(tid !== undefined && { tids: [tid] }) }); sample() },
    addThreads: (name, pid, tids) => { targets.set(name, { pid, tids }); sample() },
    addProcesses: (name, pids) => { targets.set(name, { pid: pids[0], pids }); sample() },
    stop: () => { sample(); clearInterval(timer) },
    usage: (window) => {
      const result: Record<string, number> = {}
      for (const name of targets.keys()) {
        const start = at(name, window.startUs)
        const end = at(name, window.endUs)
        if (start !== undefined && end !== undefined) result[name] = (100 * (end - start)) / ((window.endUs - window.startUs) / 1e6)
      }
      return result
    }
  }
}

/** CPU (% of one core) that processes other than `ours` used, from a watchCpu usage that includes 'machine'. */
export function othersPercent (cpu: Record<string, number>, ours: readonly string[]): number | undefined {
  if (cpu.machine === undefined) return undefined
  return Math.max(0, cpu.machine - ours.reduce((sum, name) => sum + (cpu[name] ?? 0), 0))
}
