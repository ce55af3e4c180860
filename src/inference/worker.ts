import { parentPort, workerData } from 'node:worker_threads'
import type { NumericData } from './datatypes.js'
import type { InstanceInit, RunCommand } from './instance-protocol.js'
import { firstLine, openSession, runCommand, type OpenSession } from './session.js'

// A model instance in a worker thread (MODEL_ISOLATION=thread): its synchronous
// onnxruntime run() never blocks the server's event loop.

const port = parentPort
if (port === null) throw new Error('worker.ts must run as a worker thread')

/** Output data that can be moved to the main thread without a copy. */
function ownedData (data: NumericData): NumericData {
  const whole = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer
  return whole ? data : data.slice()
}

async function open (): Promise<OpenSession | undefined> {
  try {
    return await openSession(workerData as InstanceInit)
  } catch (error) {
    // The pool ends this thread when it reads why.
    port?.postMessage({ type: 'load-failed', message: firstLine(error) })
    return undefined
  }
}

const opened = await open()
if (opened !== undefined) serve(opened)

function serve ({ session, ready }: OpenSession): void {
  port?.postMessage(ready)
  port?.on('message', (command: RunCommand) => { void answer(session, command) })
}

async function answer (session: OpenSession['session'], command: RunCommand): Promise<void> {
  const event = await runCommand(session, command)
  if (event.type !== 'result') {
    port?.postMessage(event)
    return
  }
  const transfer: ArrayBuffer[] = []
  const outputs = event.outputs.map((tensor) => {
    if (tensor.datatype === 'BYTES') return tensor
    const data = ownedData(tensor.data as NumericData)
    transfer.push(data.buffer as ArrayBuffer)
    return { ...tensor, data }
  })
  port?.postMessage({ ...event, outputs }, transfer)
}
