import type { BenchModel } from './models.js'

// Request bodies of the bench: one row each, as JSON or with binary tensors.

export interface BenchRequest {
  readonly body: Buffer
  readonly headers: Record<string, string>
}

/** Deterministic values in [-1, 1), different per element. */
function row (width: number): number[] {
  return Array.from({ length: width }, (_, i) => Math.round(((i * 7919) % 2000 - 1000)) / 1000)
}

export function jsonRequest (model: BenchModel): BenchRequest {
  const body = { inputs: [{ name: model.input, datatype: 'FP32', shape: [1, ...model.rowShape], data: row(model.inputWidth) }] }
  return { body: Buffer.from(JSON.stringify(body)), headers: { 'content-type': 'application/json' } }
}

/** The v2 binary tensor data extension: JSON header, then the raw FP32 bytes; outputs answered as bytes too. */
export function binaryRequest (model: BenchModel): BenchRequest {
  const data = Buffer.from(Float32Array.from(row(model.inputWidth)).buffer)
  const header = Buffer.from(JSON.stringify({
    inputs: [{ name: model.input, datatype: 'FP32', shape: [1, ...model.rowShape], parameters: { binary_data_size: data.length } }],
    parameters: { binary_data_output: true }
  }))
  return {
    body: Buffer.concat([header, data]),
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) }
  }
}
