import { Socket } from 'node:net'
import { decodeRun, encodeEvent, FrameReader } from './frames.js'
import type { InstanceInit } from './instance-protocol.js'
import { firstLine, openSession, runCommand } from './session.js'

// A model instance in a child process of its own (MODEL_ISOLATION=process): the gateway
// can end it mid-run (SIGKILL), and a native crash inside onnxruntime ends only this
// process. It speaks frames.ts over file descriptor 3 and runs one command at a time.

const CHANNEL_FD = 3
const init = JSON.parse(process.argv[2] ?? 'null') as InstanceInit
const channel = new Socket({ fd: CHANNEL_FD, readable: true, writable: true })
// Ctrl-C, `timeout` and some supervisors signal the whole process group. Those signals
// are the gateway's: it drains, lets the runs in progress finish, and ends this process
// itself (SIGKILL) when it is done with it.
process.on('SIGINT', () => {})
process.on('SIGTERM', () => {})
// The gateway went away (it closes the channel, or died): nothing is left to serve.
channel.on('close', () => process.exit(0))
channel.on('error', () => process.exit(0))

try {
  const { session, ready } = await openSession(init)
  channel.write(encodeEvent(ready))
  let running = Promise.resolve()
  const reader = new FrameReader((frame) => {
    const command = decodeRun(frame)
    running = running.then(async () => { channel.write(encodeEvent(await runCommand(session, command))) })
  })
  channel.on('data', (chunk: Buffer) => reader.push(chunk))
} catch (error) {
  channel.end(encodeEvent({ type: 'load-failed', message: firstLine(error) }))
}
