import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { freePort } from './ports.js'

/** A real redis-server on a free loopback port, for one test file. */
export class RedisServer {
  private process: ChildProcess | undefined

  private constructor (readonly port: number, readonly dir: string, private readonly extraArgs: string[]) {}

  static async start (extraArgs: string[] = []): Promise<RedisServer> {
    const dir = await mkdtemp(join(tmpdir(), 'spotgate-redis-'))
    const server = new RedisServer(await freePort(), dir, extraArgs)
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
    this.process = spawn('redis-server', [
      '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes',
      '--dir', this.dir, '--enable-debug-command', 'local', ...this.extraArgs
    ], { stdio: 'ignore' })
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      const client = new Redis(this.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null })
      client.on('error', () => {})
      try {
        await client.connect()
        await client.ping()
        client.disconnect()
        return
      } catch {
        client.disconnect()
        await sleep(50)
      }
    }
    throw new Error(`redis-server did not start on port ${this.port}`)
  }

  /** A client for assertions; the caller disconnects it. */
  client (): Redis {
    return new Redis(this.port, '127.0.0.1')
  }

  /** SIGKILL: a crash, keeping the data directory so a restart finds the AOF. */
  async kill (): Promise<void> {
    const child = this.process
    if (child === undefined || child.exitCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
    this.process = undefined
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
