import { InputError } from '../input-error.js'
import { EventLog } from './event-log.js'

// The SpotServe artifact's two trace formats (elastic-switch/trace/):
//   g4dn.csv         `milliseconds,add|remove,nodeN`, one event per line, no header
//   trace_NNNN.txt   JSON lines `[ms, "add"|"remove"|"DONE", {"nodes": [...]}]`, DONE last

export function parseSpotServeCsv (text: string, file: string): ReturnType<EventLog['finish']> {
  const log = new EventLog(file)
  lines(text).forEach(({ line, number }) => {
    const fields = line.split(',').map((f) => f.trim())
    if (fields.length !== 3) throw new InputError(`${file}:${number}: expected "milliseconds,add|remove,node", got ${JSON.stringify(line)}`)
    const [ms, action, node] = fields
    if (action === 'add') log.add(ms, node, String(number))
    else if (action === 'remove') log.remove(ms, node, String(number))
    else throw new InputError(`${file}:${number}: unknown action ${JSON.stringify(action)} (expected add or remove)`)
  })
  return log.finish()
}

export function parseSpotServeJsonLines (text: string, file: string): ReturnType<EventLog['finish']> {
  const log = new EventLog(file)
  let doneMs: unknown
  let doneLine = ''
  for (const { line, number } of lines(text)) {
    if (doneMs !== undefined) throw new InputError(`${file}:${number}: an event after DONE`)
    let event: unknown
    try {
      event = JSON.parse(line)
    } catch {
      throw new InputError(`${file}:${number}: not JSON: ${line.slice(0, 80)}`)
    }
    if (!Array.isArray(event) || event.length !== 3 || typeof event[1] !== 'string' || !isNodeList(event[2])) {
      throw new InputError(`${file}:${number}: expected [ms, "add"|"remove"|"DONE", {"nodes": [...]}], got ${line.slice(0, 80)}`)
    }
    const [ms, action, { nodes }] = event as [unknown, string, { nodes: string[] }]
    if (action === 'DONE') {
      doneMs = ms
      doneLine = String(number)
      continue
    }
    if (action !== 'add' && action !== 'remove') throw new InputError(`${file}:${number}: unknown action ${JSON.stringify(action)} (expected add, remove or DONE)`)
    if (nodes.length === 0) log.time(ms, String(number))
    for (const node of nodes) {
      if (action === 'add') log.add(ms, node, String(number))
      else log.remove(ms, node, String(number))
    }
  }
  return log.finish(doneMs, doneLine)
}

function isNodeList (value: unknown): value is { nodes: string[] } {
  const nodes = (value as { nodes?: unknown } | null)?.nodes
  return Array.isArray(nodes) && nodes.every((n) => typeof n === 'string')
}

/** Non-empty lines with their 1-based numbers. */
export function lines (text: string): Array<{ line: string, number: number }> {
  return text.split(/\r?\n/).map((line, i) => ({ line: line.trim(), number: i + 1 })).filter(({ line }) => line !== '')
}
