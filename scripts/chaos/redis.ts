import { spawn, type ChildProcess } from 'node:child_process'
import { mkdir } from 'node:fs/promises'
import { Redis } from 'ioredis'
import { freePort, pause } from './util.js'

/**
 * The run's own redis-server: loopback only, a free port, AOF on (as a production
 * journal would run), data in the run's scratch directory.
 */
export class ChaosRedis {
  private constructor (readonly port: number, private readonly child: ChildProcess) {}

  static async start (dir: string): Promise<ChaosRedis> {
    await mkdir(dir, { recursive: true })
    const port = await freePort()
    const child = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec', '--dir', dir
    ], { stdio: 'ignore' })
    const failed = new Promise<never>((_resolve, reject) => {
      child.once('error', (error) => reject(new Error(`cannot start redis-server (is it installed?): ${error.message}`)))
      child.once('exit', (code, signal) => reject(new Error(`redis-server exited at start-up (${code ?? signal})`)))
    })
    failed.catch(() => {})
    const redis = new ChaosRedis(port, child)
    await Promise.race([redis.waitUntilUp(10_000), failed])
    return redis
  }

  get url (): string {
    return `redis://127.0.0.1:${this.port}`
  }

  get pid (): number | undefined {
    return this.child.pid
  }

  /** A client for the harness's own reads; the caller disconnects it. */
  client (): Redis {
    return new Redis(this.port, '127.0.0.1', { maxRetriesPerRequest: 1, connectionName: 'spotgate-chaos' })
  }

  async stop (): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    const exited = new Promise((resolve) => this.child.once('exit', resolve))
    this.child.kill('SIGKILL')
    await exited
  }

  /** Synchronous last resort for process exit handlers. */
  killNow (): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL')
  }

  private async waitUntilUp (timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      const client = new Redis(this.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null })
      client.on('error', () => {})
      try {
        await client.connect()
        await client.ping()
        return
      } catch {
        await pause(50)
      } finally {
        client.disconnect()
      }
    }
    throw new Error(`redis-server did not answer on port ${this.port} within ${timeoutMs} ms`)
  }
}
