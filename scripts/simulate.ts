#!/usr/bin/env node
// npm run simulate -- --trace NAME|FILE [fleet, load, timing and price flags] [--json FILE] [--svg FILE]
// npm run simulate -- --replay NAME|FILE [--speed X] [--json FILE]
// What a spot fleet costs and does to its requests over a real interruption trace
// (README, "What does spot save?"): a discrete-event simulation, or the trace played against real
// processes on this machine. A bad command line or trace file: one line, exit 2.
import { access, constants, writeFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { EX_USAGE, InputError } from './simulate/input-error.js'
import { parseOptions, USAGE, type ReplayOptions, type SimulateOptions } from './simulate/options.js'
import { runSimulation } from './simulate/run.js'

async function main (): Promise<number> {
  const options = parseOptions(process.argv.slice(2))
  if (options === 'help') {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  // Found before a run that may take minutes, not after it.
  for (const file of [options.json, options.mode === 'simulate' ? options.svg : undefined]) if (file !== undefined) await checkWritable(file)
  return options.mode === 'simulate' ? await simulateTrace(options) : await replayTrace(options)
}

async function simulateTrace (options: SimulateOptions): Promise<number> {
  const run = runSimulation(options)
  if (options.json !== STDOUT) process.stdout.write(`${run.text}\n`)
  if (options.json !== undefined) await save(options.json, `${JSON.stringify(run.report, null, 2)}\n`)
  if (options.svg !== undefined) await save(options.svg, run.svg())
  return 0
}

async function replayTrace (options: ReplayOptions): Promise<number> {
  // Loaded only here: the simulation alone starts no process and needs no Redis client.
  const { replay } = await import('./simulate/replay/run.js')
  const interrupt = new AbortController()
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (interrupt.signal.aborted) process.exit(130)
      process.stderr.write(`simulate: ${signal}: stopping the replay and everything it started (again to exit at once)\n`)
      interrupt.abort()
    })
  }
  let outcome: Awaited<ReturnType<typeof replay>>
  try {
    outcome = await replay(options, { signal: interrupt.signal, progress: (line) => process.stderr.write(`simulate ${line}\n`) })
  } catch (error) {
    if (error instanceof InputError) throw error
    const { message, logDir } = error as Error & { logDir?: string }
    process.stderr.write(`simulate: the replay failed: ${message}${logDir === undefined ? '' : ` (logs kept in ${logDir})`}\n`)
    return interrupt.signal.aborted ? 130 : 1
  }
  if (options.json !== STDOUT) process.stdout.write(`${outcome.text}\n`)
  if (options.json !== undefined) await save(options.json, `${JSON.stringify(outcome.report, null, 2)}\n`)
  return outcome.interrupted ? 130 : outcome.passed ? 0 : 1
}

/** `--json -`: the JSON report goes to stdout, in place of the text one. */
const STDOUT = '-'

async function checkWritable (file: string): Promise<void> {
  if (file === STDOUT) return
  try {
    await access(dirname(resolve(file)), constants.W_OK)
    await access(file, constants.W_OK).catch((error: NodeJS.ErrnoException) => { if (error.code !== 'ENOENT') throw error })
  } catch (error) {
    throw new InputError(`cannot write ${file}: ${(error as Error).message}`)
  }
}

async function save (file: string, content: string): Promise<void> {
  if (file === STDOUT) {
    process.stdout.write(content)
    return
  }
  try {
    await writeFile(file, content)
  } catch (error) {
    throw new InputError(`cannot write ${file}: ${(error as Error).message}`)
  }
}

try {
  process.exitCode = await main()
} catch (error) {
  if (!(error instanceof InputError)) throw error
  process.stderr.write(`simulate: ${error.message}\n`)
  process.exitCode = EX_USAGE
}
