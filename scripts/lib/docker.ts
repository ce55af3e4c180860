import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { repoPath } from './paths.js'

// The docker CLI, for the cold-start measurement and the container tests. Everything
// runs with host networking and builds with `--network host`: the daemons these run
// against may have no bridge network at all, and nothing here should leave loopback.

export interface CommandResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs a command to completion (killed after `timeoutMs`); never throws for a non-zero exit. */
export function runCommand (command: string, args: readonly string[], options: { timeoutMs?: number, env?: NodeJS.ProcessEnv, cwd?: string, input?: string } = {}): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { env: options.env ?? process.env, cwd: options.cwd ?? repoPath(), stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout?.on('data', (chunk: Buffer) => out.push(chunk))
    child.stderr?.on('data', (chunk: Buffer) => err.push(chunk))
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000)
    child.once('error', (error) => {
      clearTimeout(timer)
      resolve({ code: 127, stdout: '', stderr: error.message })
    })
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') })
    })
    if (child.stdin !== null) {
      // A command may exit without reading its input.
      child.stdin.on('error', () => {})
      child.stdin.end(options.input)
    }
  })
}

/** `docker <args>`; the environment's DOCKER_HOST picks the daemon. */
export function docker (args: readonly string[], options: { timeoutMs?: number, input?: string } = {}): Promise<CommandResult> {
  return runCommand('docker', args, { ...options, env: { ...process.env, DOCKER_BUILDKIT: '0' } })
}

/** `docker <args>`, throwing with its stderr unless it exits 0; its stdout, trimmed. */
export async function dockerOk (args: readonly string[], options: { timeoutMs?: number, input?: string } = {}): Promise<string> {
  const result = await docker(args, options)
  if (result.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${result.code ?? 'on a signal'}: ${(result.stderr || result.stdout).trim().slice(-2000)}`)
  return result.stdout.trim()
}

/** Whether a daemon answers (`docker info`). */
export async function dockerAnswers (): Promise<boolean> {
  return (await docker(['info', '--format', '{{.ServerVersion}}'], { timeoutMs: 15_000 })).code === 0
}

/**
 * Builds `dockerfile` as `tag` with the legacy builder and host networking (no bridge
 * needed for `RUN npm ci`). Returns the build log; throws with its end on failure.
 */
export async function buildImage (tag: string, options: { dockerfile?: string, target?: string, timeoutMs?: number } = {}): Promise<string> {
  const args = ['build', '--network', 'host', '-f', repoPath(options.dockerfile ?? 'Dockerfile'), '-t', tag]
  if (options.target !== undefined) args.push('--target', options.target)
  const result = await docker([...args, repoPath()], { timeoutMs: options.timeoutMs ?? 600_000 })
  const log = result.stdout + result.stderr
  if (result.code !== 0) throw new Error(`docker build of ${options.dockerfile ?? 'Dockerfile'} failed:\n${log.slice(-4000)}`)
  return log
}

/** Uncompressed size in bytes, as `docker images` shows it. */
export async function imageSize (tag: string): Promise<number> {
  return Number(await dockerOk(['image', 'inspect', '--format', '{{.Size}}', tag]))
}

export interface ContainerState {
  readonly status: string
  readonly running: boolean
  readonly exitCode: number
  /** `starting`, `healthy`, `unhealthy`, or undefined without a HEALTHCHECK. */
  readonly health?: string
}

export async function containerState (name: string): Promise<ContainerState> {
  const state = JSON.parse(await dockerOk(['inspect', '--format', '{{json .State}}', name])) as { Status: string, Running: boolean, ExitCode: number, Health?: { Status: string } }
  return { status: state.Status, running: state.Running, exitCode: state.ExitCode, health: state.Health?.Status }
}

/** What the container wrote, stdout and stderr together. */
export async function containerLogs (name: string): Promise<string> {
  const result = await docker(['logs', name], { timeoutMs: 30_000 })
  return result.stdout + result.stderr
}

/** The pino records among the container's log lines. */
export function logRecords (text: string): Array<Record<string, unknown>> {
  const records: Array<Record<string, unknown>> = []
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue
    try { records.push(JSON.parse(line) as Record<string, unknown>) } catch {}
  }
  return records
}

/** Removes containers by name, running or not; missing ones are fine. */
export async function removeContainers (...names: string[]): Promise<void> {
  if (names.length > 0) await docker(['rm', '--force', '--volumes', ...names], { timeoutMs: 60_000 })
}

/**
 * The script that starts a Docker daemon without bridge networking and makes stand-in
 * base images, on machines without Docker Hub: DOCKER_SETUP, or the development
 * environment's shared tool next to the repository.
 */
export function dockerSetupScript (): string | undefined {
  const script = process.env.DOCKER_SETUP ?? join(repoPath(), '..', 'shared', 'tools', 'local-docker.sh')
  return existsSync(script) ? script : undefined
}

/** The socket that script's daemon listens on (its WORK knob, /tmp/local-docker by default). */
export function dockerSetupSocket (): string {
  return `unix://${process.env.WORK ?? '/tmp/local-docker'}/docker.sock`
}
