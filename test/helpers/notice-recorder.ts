import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino, type Logger } from 'pino'
import type { Counter } from 'prom-client'
import type { Notice } from '../../src/lifecycle/notices/notice.js'

/** A pino logger at debug whose records stay in memory for assertions. */
export function memoryLogger (): { log: Logger, records: Array<Record<string, unknown>> } {
  const records: Array<Record<string, unknown>> = []
  const sink = new Writable({
    write (chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') records.push(JSON.parse(line) as Record<string, unknown>)
      done()
    }
  })
  return { log: pino({ level: 'debug' }, sink), records }
}

/** Collects what a source emits. */
export class NoticeRecorder {
  readonly notices: Notice[] = []
  readonly emit = (notice: Notice): void => { this.notices.push(notice) }

  /** Waits until `count` notices arrived; throws after `timeoutMs`. */
  async waitForCount (count: number, timeoutMs = 5000): Promise<Notice> {
    await waitFor(() => this.notices.length >= count, timeoutMs, `${count} notice(s)`)
    return this.notices[count - 1] as Notice
  }
}

/** Polls `condition` every 10 ms; throws after `timeoutMs` naming `what`. */
export async function waitFor (condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(10)
  }
}

export async function counterValue (counter: Counter, labels: Record<string, string> = {}): Promise<number> {
  const { values } = await counter.get()
  const match = values.find((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want))
  return match?.value ?? 0
}
