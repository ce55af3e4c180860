import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { stablePort } from './process.js'

const START_TIMEOUT_MS = 10_000

/**
 * A real redis-server on a free loopback port with AOF on, in a scratch directory:
 * for tests, the chaos harness, the fleet and the benchmark alike. The same binary
 * runs a Sentinel (`startSentinel`).
 */
export class RedisServer {
  private process: ChildProcess | undefined

  private constructor (readonly port: number, readonly dir: string, private readonly argv: () => string[]) {}

  /** `extraArgs` go after the defaults, so they can override them (`--appendfsync always`). */
  static async start (extraArgs: readonly string[] = []): Promise<RedisServer> {
    const dir = await mkdtemp(join(tmpdir(), 'spotgate-redis-'))
    const port = await stablePort()
    const server = new RedisServer(port, dir, () => [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes',
      '--dir', dir, '--enable-debug-command', 'local', ...extraArgs
    ])
    await server.launch()
    return server
  }

  /** A Sentinel with `config` (its `sentinel monitor …` lines); it rewrites its own file, kept in its directory. */
  static async startSentinel (config: readonly string[]): Promise<RedisServer> {
    const dir = await mkdtemp(join(tmpdir(), 'spotgate-sentinel-'))
    const port = await stablePort()
    const file = join(dir, 'sentinel.conf')
    await writeFile(file, [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, ...config, ''].join('\n'))
    const server = new RedisServer(port, dir, () => [file, '--sentinel'])
    await server.launch()
    return server
  }

  get url (): string {
    return `redis://127.0.0.1:${this.port}`
  }

  get pid (): number | undefined {
    return this.process?.pid
  }

  private async launch (): Promise<void> {
    const child = spawn('redis-server', this.argv(), { stdio: 'ignore' })
    this.process = child
    let failure: Error | undefined
    child.once('error', (error) => { failure = new Error(`cannot start redis-server (install it with apt-get install -y redis-server): ${error.message}`) })
    child.once('exit', (code, signal) => { failure ??= new Error(`redis-server exited at start-up (${code ?? signal})`) })
    const deadline = Date.now() + START_TIMEOUT_MS
    while (Date.now() < deadline) {
      if (failure !== undefined) throw failure
      const client = new Redis(this.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null })
      client.on('error', () => {})
      try {
        await client.connect()
        await client.ping()
        return
      } catch {
        await sleep(50)
      } finally {
        client.disconnect()
      }
    }
    throw new Error(`redis-server did not answer on port ${this.port} within ${START_TIMEOUT_MS} ms`)
  }

  /** A client for the caller's own reads and assertions; the caller disconnects it. */
  client (): Redis {
    const client = new Redis(this.port, '127.0.0.1', { maxRetriesPerRequest: 1 })
    client.on('error', () => {})
    return client
  }

  /** SIGKILL: a crash, keeping the data directory so a restart finds the AOF. */
  async kill (): Promise<void> {
    const child = this.process
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
    this.process = undefined
  }

  /** Synchronous last resort for process exit handlers. */
  killNow (): void {
    const child = this.process
    if (child !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }

  /** SIGSTOP / SIGCONT: a hung server that keeps its sockets open. */
  pause (): void { this.process?.kill('SIGSTOP') }
  resume (): void { this.process?.kill('SIGCONT') }

  async restart (): Promise<void> {
    await this.kill()
    await this.launch()
  }

  async stop (): Promise<void> {
    this.resume()
    await this.kill()
    await rm(this.dir, { recursive: true, force: true })
  }
}
