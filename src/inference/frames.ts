import { decodeBytesElements, encodeBytesElements } from './bytes-elements.js'
import { viewOf, type NumericData, type V2Datatype } from './datatypes.js'
import type { InstanceEvent, RunCommand } from './instance-protocol.js'
import { elementCount, type Tensor } from './signature.js'

// The wire format between the gateway and a model instance in a child process
// (MODEL_ISOLATION=process): length-prefixed frames over one socket, tensors as raw
// bytes (no JSON of numbers), control messages as short JSON.
//
//   frame   := u32 length-of-the-rest, u8 kind, body
//   run     := u32 job, u16 outputs asked for (0xffff: all), each (u16 length, UTF-8 name), tensors
//   result  := u32 job, f64 inference ms, tensors
//   failed  := u32 job, UTF-8 message
//   ready / load-failed := UTF-8 JSON of the event
//   tensors := u16 count, each: u16 name length, name, u8 datatype, u8 rank, u32 × rank dims, u32 byte length, bytes
//
// Numbers are little-endian. BYTES tensors travel as the v2 binary extension lays them out.

const enum Kind { Run = 1, Result = 2, RunFailed = 3, Ready = 4, LoadFailed = 5 }

const DATATYPES: readonly V2Datatype[] = ['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64', 'BYTES']
const ALL_OUTPUTS = 0xffff

function tensorPayload (tensor: Tensor): Uint8Array {
  if (tensor.datatype === 'BYTES') return encodeBytesElements(tensor.data as string[])
  const data = tensor.data as NumericData
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
}

function tensorsSize (names: readonly Buffer[], payloads: readonly Uint8Array[], tensors: readonly Tensor[]): number {
  let size = 2
  tensors.forEach((tensor, i) => { size += 2 + names[i].length + 2 + 4 * tensor.shape.length + 4 + payloads[i].byteLength })
  return size
}

function writeTensors (out: Buffer, at: number, tensors: readonly Tensor[], names: readonly Buffer[], payloads: readonly Uint8Array[]): number {
  at = out.writeUInt16LE(tensors.length, at)
  tensors.forEach((tensor, i) => {
    at = out.writeUInt16LE(names[i].length, at)
    at += names[i].copy(out, at)
    out[at++] = DATATYPES.indexOf(tensor.datatype)
    out[at++] = tensor.shape.length
    for (const dim of tensor.shape) at = out.writeUInt32LE(dim, at)
    at = out.writeUInt32LE(payloads[i].byteLength, at)
    out.set(payloads[i], at)
    at += payloads[i].byteLength
  })
  return at
}

/** A frame of `kind` whose body is `fixed` bytes written by `head`, then tensors. */
function tensorFrame (kind: Kind, fixed: number, head: (out: Buffer, at: number) => number, tensors: readonly Tensor[]): Buffer {
  const names = tensors.map((t) => Buffer.from(t.name, 'utf8'))
  const payloads = tensors.map(tensorPayload)
  const length = 1 + fixed + tensorsSize(names, payloads, tensors)
  const out = Buffer.allocUnsafe(4 + length)
  out.writeUInt32LE(length, 0)
  out[4] = kind
  writeTensors(out, head(out, 5), tensors, names, payloads)
  return out
}

function jsonFrame (kind: Kind, value: unknown): Buffer {
  const body = Buffer.from(typeof value === 'string' ? value : JSON.stringify(value), 'utf8')
  const out = Buffer.allocUnsafe(5 + body.length)
  out.writeUInt32LE(1 + body.length, 0)
  out[4] = kind
  body.copy(out, 5)
  return out
}

export function encodeRun (command: RunCommand): Buffer {
  const names = command.outputs?.map((name) => Buffer.from(name, 'utf8'))
  const fixed = 4 + 2 + (names?.reduce((sum, n) => sum + 2 + n.length, 0) ?? 0)
  return tensorFrame(Kind.Run, fixed, (out, at) => {
    at = out.writeUInt32LE(command.jobId, at)
    at = out.writeUInt16LE(names === undefined ? ALL_OUTPUTS : names.length, at)
    for (const name of names ?? []) {
      at = out.writeUInt16LE(name.length, at)
      at += name.copy(out, at)
    }
    return at
  }, command.inputs)
}

export function encodeEvent (event: InstanceEvent): Buffer {
  switch (event.type) {
    case 'result':
      return tensorFrame(Kind.Result, 12, (out, at) => out.writeDoubleLE(event.inferenceMs, out.writeUInt32LE(event.jobId, at)), event.outputs)
    case 'run-failed': {
      const message = Buffer.from(event.message, 'utf8')
      const out = Buffer.allocUnsafe(9 + message.length)
      out.writeUInt32LE(5 + message.length, 0)
      out[4] = Kind.RunFailed
      out.writeUInt32LE(event.jobId, 5)
      message.copy(out, 9)
      return out
    }
    case 'ready': return jsonFrame(Kind.Ready, event)
    case 'load-failed': return jsonFrame(Kind.LoadFailed, event.message)
  }
}

/** Reads tensors from `frame` at `at`; numeric data are views into the frame where aligned. */
function readTensors (frame: Buffer, at: number): Tensor[] {
  const count = frame.readUInt16LE(at)
  at += 2
  const tensors: Tensor[] = []
  for (let i = 0; i < count; i++) {
    const nameLength = frame.readUInt16LE(at)
    const name = frame.toString('utf8', at + 2, at + 2 + nameLength)
    at += 2 + nameLength
    const datatype = DATATYPES[frame[at]]
    const rank = frame[at + 1]
    at += 2
    const shape: number[] = []
    for (let d = 0; d < rank; d++, at += 4) shape.push(frame.readUInt32LE(at))
    const size = frame.readUInt32LE(at)
    at += 4
    const bytes = frame.subarray(at, at + size)
    at += size
    const data = datatype === 'BYTES' ? decodeBytesElements(bytes, elementCount(shape)) : viewOf(datatype, bytes)
    tensors.push({ name, datatype, shape, data })
  }
  return tensors
}

export function decodeRun (frame: Buffer): RunCommand {
  const jobId = frame.readUInt32LE(1)
  const outputCount = frame.readUInt16LE(5)
  let at = 7
  let outputs: string[] | undefined
  if (outputCount !== ALL_OUTPUTS) {
    outputs = []
    for (let i = 0; i < outputCount; i++) {
      const length = frame.readUInt16LE(at)
      outputs.push(frame.toString('utf8', at + 2, at + 2 + length))
      at += 2 + length
    }
  }
  return { type: 'run', jobId, inputs: readTensors(frame, at), ...(outputs !== undefined && { outputs }) }
}

export function decodeEvent (frame: Buffer): InstanceEvent {
  switch (frame[0] as Kind) {
    case Kind.Result: return { type: 'result', jobId: frame.readUInt32LE(1), inferenceMs: frame.readDoubleLE(5), outputs: readTensors(frame, 13) }
    case Kind.RunFailed: return { type: 'run-failed', jobId: frame.readUInt32LE(1), message: frame.toString('utf8', 5) }
    case Kind.Ready: return JSON.parse(frame.toString('utf8', 1)) as InstanceEvent
    case Kind.LoadFailed: return { type: 'load-failed', message: frame.toString('utf8', 1) }
    default: throw new Error(`unknown frame kind ${frame[0]}`)
  }
}

/**
 * Splits a byte stream into frames (without their length prefix; byte 0 is the kind).
 * Each frame is handed out as its own buffer, so tensor views into it stay valid.
 */
export class FrameReader {
  private chunks: Buffer[] = []
  private buffered = 0

  /** Called with each complete frame; may be replaced as the reader changes hands. */
  constructor (public onFrame: (frame: Buffer) => void) {}

  push (chunk: Buffer): void {
    this.chunks.push(chunk)
    this.buffered += chunk.length
    while (this.buffered >= 4) {
      const head = this.chunks[0].length >= 4 ? this.chunks[0] : Buffer.concat(this.chunks)
      const length = head.readUInt32LE(0)
      if (this.buffered < 4 + length) return
      const joined = this.chunks.length > 1
      const all = joined ? Buffer.concat(this.chunks, this.buffered) : this.chunks[0]
      // A frame gathered from several chunks is already a fresh copy; one read in a single
      // chunk is copied, so its tensors do not keep the whole socket read alive.
      const frame = joined ? all.subarray(4, 4 + length) : Buffer.from(all.subarray(4, 4 + length))
      const rest = all.subarray(4 + length)
      this.chunks = rest.length > 0 ? [rest] : []
      this.buffered = rest.length
      this.onFrame(frame)
    }
  }
}
