import { createServer, type AddressInfo, type Server } from 'node:net'
import { join } from 'node:path'
import { ChaosInstance } from '../../chaos/instance.js'
import { pause } from '../../chaos/util.js'
import { allServersUp, startHaproxy, type Haproxy } from '../../lib/haproxy.js'
import { waitUntil } from '../../lib/process.js'

/**
 * HAProxy (the shipped configuration) in front of a fixed set of server slots, each a
 * loopback port: a gateway the trace adds takes a free slot, and HAProxy's health check
 * finds it as it finds a restarted Compose replica. Slots outnumber the instances a
 * replay keeps alive, so a gateway still finishing its drain never holds up a new one.
 */
export class GatewaySlots {
  private readonly occupant: Array<ChaosInstance | 'starting' | undefined>

  private constructor (readonly haproxy: Haproxy, private readonly ports: readonly number[]) {
    this.occupant = ports.map(() => undefined)
  }

  static async start (dir: string, count: number): Promise<GatewaySlots> {
    const [port, statsPort, ...ports] = await distinctFreePorts(count + 2)
    const haproxy = await startHaproxy(dir, ports.map((p, i) => ({ name: slotName(i), address: `127.0.0.1:${p}` })), { port, statsPort })
    return new GatewaySlots(haproxy, ports)
  }

  get url (): string {
    return this.haproxy.url
  }

  /** Starts a gateway in a free slot, waiting (bounded) for one to free up; undefined when none did. */
  async launch (name: string, env: Record<string, string>, cwd: string, logDir: string, signal: AbortSignal): Promise<ChaosInstance | undefined> {
    const deadline = Date.now() + 15_000
    for (;;) {
      const slot = this.occupant.findIndex((instance) => instance === undefined || (instance !== 'starting' && !instance.alive))
      if (slot !== -1) {
        this.occupant[slot] = 'starting'
        const instance = await ChaosInstance.start(name, env, cwd, join(logDir, `${name}.log`), this.ports[slot])
        this.occupant[slot] = instance
        return instance
      }
      if (Date.now() > deadline || signal.aborted) return undefined
      await pause(100, signal)
    }
  }

  /** Waits until HAProxy has marked the slot of each of `instances` UP; false on timeout. */
  async waitUp (instances: readonly ChaosInstance[], timeoutMs: number): Promise<boolean> {
    const names = instances.map((instance) => slotName(this.occupant.indexOf(instance)))
    return await waitUntil(async () => {
      const rows = await this.haproxy.stats()
      return allServersUp(rows, names)
    }, timeoutMs, 100)
  }
}

/** Ports free a moment ago, all different (each held open until all are chosen). */
async function distinctFreePorts (count: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: count }, () => new Promise<Server>((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(server))
  })))
  const ports = servers.map((server) => (server.address() as AddressInfo).port)
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))))
  return ports
}

function slotName (index: number): string {
  return `slot-${index + 1}`
}
