import type { Notice, NoticeSource } from './notice.js'

/** SIGTERM (Kubernetes, systemd, docker stop, a GCP ACPI soft-off) or SIGINT (Ctrl-C). */
export class SignalSource implements NoticeSource {
  readonly name: 'sigterm' | 'sigint'
  private listener: (() => void) | undefined

  constructor (private readonly signal: 'SIGTERM' | 'SIGINT') {
    this.name = signal === 'SIGTERM' ? 'sigterm' : 'sigint'
  }

  start (emit: (notice: Notice) => void): void {
    this.listener = () => emit({ source: this.name, kind: this.signal, description: `received ${this.signal}` })
    process.on(this.signal, this.listener)
  }

  async stop (): Promise<void> {
    if (this.listener !== undefined) process.off(this.signal, this.listener)
  }
}
