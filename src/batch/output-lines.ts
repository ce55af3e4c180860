import { lineRequestId, responseRequestId } from './objects.js'

// The lines of the output and error files, and the part records workers write them in.
// Output line: {"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error": null};
// a line that never ran: {"id", "custom_id", "response": null, "error": {"code", "message"}}.

export function answeredLine (batchId: string, line: number, customId: string, statusCode: number, body: Buffer): string {
  return `{"id":${JSON.stringify(lineRequestId(batchId, line))},"custom_id":${JSON.stringify(customId)},"response":{"status_code":${statusCode},"request_id":${JSON.stringify(responseRequestId(batchId, line))},"body":${body.toString('utf8')}},"error":null}`
}

export function unrunLine (batchId: string, line: number, customId: string, code: string, message: string): string {
  return `{"id":${JSON.stringify(lineRequestId(batchId, line))},"custom_id":${JSON.stringify(customId)},"response":null,"error":${JSON.stringify({ code, message })}}`
}

/** One line's result in a part: `<line index> <o|f> <output line>`, one per text line. */
export interface PartRecord {
  readonly index: number
  readonly ok: boolean
  readonly text: string
}

export function encodePart (records: readonly PartRecord[]): Buffer {
  return Buffer.from(records.map((r) => `${r.index} ${r.ok ? 'o' : 'f'} ${r.text}\n`).join(''))
}

export function decodePart (data: Buffer): PartRecord[] {
  return data.toString('utf8').split('\n').filter((line) => line !== '').map((line) => {
    const first = line.indexOf(' ')
    return { index: Number(line.slice(0, first)), ok: line[first + 1] === 'o', text: line.slice(first + 3) }
  })
}
