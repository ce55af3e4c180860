import { microsPerRequest } from './measured.js'
import type { BenchReport, Row } from './report.js'
import { formatGoal, formatTargetValue, type Target } from './targets.js'

// A hand-written SVG of the bench: each target's measured value against its goal line,
// then the throughput of each spotgate run beside the ceiling it is compared with.

const WIDTH = 1040
const LABEL_WIDTH = 330
const BAR_WIDTH = 400
const ROW = 30
const GREEN = '#2e7d32'
const RED = '#c62828'
const GREY = '#78909c'
const BLUE = '#1565c0'

const escape = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

function text (x: number, y: number, content: string, attrs = ''): string {
  return `<text x="${x}" y="${y}" ${attrs}>${escape(content)}</text>`
}

const STATUS_COLOUR = { met: GREEN, missed: RED, 'not measured': GREY } as const

function targetRow (t: Target, y: number): string {
  const label = `<g><title>${escape(t.description)}</title>${text(LABEL_WIDTH - 10, y + 19, t.label, 'text-anchor="end"')}</g>`
  const colour = STATUS_COLOUR[t.status]
  const verdict = text(LABEL_WIDTH + BAR_WIDTH + 12, y + 19, `${formatTargetValue(t.unit, t.value)} (goal ${formatGoal(t)}) ${t.status}`, `fill="${colour}" font-weight="bold"`)
  if (t.value === undefined) return [label, verdict].join('\n')
  const scaleMax = Math.max(t.value, t.target) * 1.15
  const barLength = (Math.min(t.value, scaleMax) / scaleMax) * BAR_WIDTH
  const goalX = LABEL_WIDTH + (t.target / scaleMax) * BAR_WIDTH
  return [
    label,
    `<rect x="${LABEL_WIDTH}" y="${y + 6}" width="${barLength.toFixed(1)}" height="${ROW - 12}" fill="${colour}" rx="2"/>`,
    `<line x1="${goalX.toFixed(1)}" x2="${goalX.toFixed(1)}" y1="${y + 1}" y2="${y + ROW - 1}" stroke="#000" stroke-width="2" stroke-dasharray="4 2"/>`,
    verdict
  ].join('\n')
}

function throughputGroup (title: string, rows: readonly Row[], y: number): { svg: string, height: number } {
  const max = Math.max(...rows.map((r) => r.rowsPerSecond)) * 1.05
  const parts = [text(20, y + 16, title, 'font-weight="bold"')]
  rows.forEach((row, index) => {
    const top = y + 24 + index * ROW
    const ceiling = row.kind === 'ceiling'
    const length = (row.rowsPerSecond / max) * BAR_WIDTH
    parts.push(
      text(LABEL_WIDTH - 10, top + 19, row.name, 'text-anchor="end"'),
      `<rect x="${LABEL_WIDTH}" y="${top + 6}" width="${length.toFixed(1)}" height="${ROW - 12}" fill="${ceiling ? GREY : BLUE}" rx="2"/>`,
      text(LABEL_WIDTH + length + 8, top + 19, `${Math.round(row.rowsPerSecond).toLocaleString('en-US')}${row.ratio === undefined ? '' : `  (${row.ratio.value.toFixed(2)} × ${row.ratio.to})`}`)
    )
  })
  return { svg: parts.join('\n'), height: 24 + rows.length * ROW + 16 }
}

const CPU_PARTS = [
  { name: 'gateway main thread', label: 'main thread', colour: BLUE },
  { name: 'model workers', label: 'model workers', colour: '#ef6c00' },
  { name: 'redis-server', label: 'redis-server', colour: '#ad1457' },
  { name: 'load generator', label: 'load generator', colour: GREY }
] as const

/** Per spotgate run, a stacked bar of CPU µs per answered request: where each request's cost lands. */
function cpuGroup (report: BenchReport, y: number): { svg: string, height: number } {
  const perRequest = report.scenarios.map((s) => ({
    label: s.label,
    parts: CPU_PARTS.map((p) => ({ ...p, micros: microsPerRequest(s.cpu[p.name], s.load.requestsPerSecond) }))
  }))
  const max = Math.max(...perRequest.map((r) => r.parts.reduce((sum, p) => sum + (p.micros ?? 0), 0))) * 1.05
  const legend = CPU_PARTS.map((p, i) => `<rect x="${LABEL_WIDTH + i * 130}" y="${y + 24}" width="12" height="12" fill="${p.colour}"/>${text(LABEL_WIDTH + i * 130 + 17, y + 35, p.label)}`)
  const parts = [text(20, y + 16, 'CPU µs per answered request (gateway: main thread and model workers; other gateway threads left out)', 'font-weight="bold"'), ...legend]
  perRequest.forEach((run, index) => {
    const top = y + 44 + index * ROW
    let x = LABEL_WIDTH
    parts.push(text(LABEL_WIDTH - 10, top + 19, run.label, 'text-anchor="end"'))
    for (const part of run.parts) {
      if (part.micros === undefined) continue
      const length = max === 0 ? 0 : (part.micros / max) * BAR_WIDTH
      parts.push(`<rect x="${x.toFixed(1)}" y="${top + 6}" width="${length.toFixed(1)}" height="${ROW - 12}" fill="${part.colour}"><title>${escape(`${part.label}: ${part.micros.toFixed(0)} µs`)}</title></rect>`)
      x += length
    }
    // Absent parts (no redis-server with the in-process journal) show as –, so the sums line up with the legend.
    parts.push(text(x + 8, top + 19, run.parts.map((p) => (p.micros === undefined ? '–' : p.micros.toFixed(0))).join(' + ') + ' µs'))
  })
  return { svg: parts.join('\n'), height: 44 + perRequest.length * ROW + 16 }
}

export function renderChart (report: BenchReport): string {
  const parts: string[] = []
  let y = 20
  parts.push(text(20, y + 10, `spotgate bench, ${report.date.slice(0, 10)}: ${report.machine.cpus} × ${report.machine.cpuModel}, ${report.load.connections} connections, Node ${report.machine.node}`, 'font-size="15" font-weight="bold"'))
  y += 34
  parts.push(text(20, y, 'Targets (bar: measured; dashed line: goal; green met, red missed, grey not measured)', 'font-weight="bold"'))
  y += 8
  for (const t of report.targets) {
    parts.push(targetRow(t, y))
    y += ROW
  }
  y += 20
  // The tiny model is judged against the HTTP ceiling (its onnxruntime ceiling would dwarf every bar), the others against onnxruntime.
  const groups: Array<[string, Row[]]> = [
    ['Tiny model: requests/s (grey: HTTP ceiling)', report.rows.filter((r) => (r.kind === 'ceiling' && r.model === undefined) || (r.kind === 'spotgate' && r.ratio?.to === 'echo'))],
    ['MLP 512→2048→2048→1000: rows/s (grey: onnxruntime ceilings)', report.rows.filter((r) => r.model === 'mlp')],
    ['PP-OCR text-direction CNN, 3×48×192: images/s (grey: onnxruntime ceilings)', report.rows.filter((r) => r.model === 'text_direction')]
  ]
  for (const [title, rows] of groups) {
    if (!rows.some((r) => r.kind === 'spotgate')) continue
    const group = throughputGroup(title, rows, y)
    parts.push(group.svg)
    y += group.height
  }
  if (report.scenarios.length > 0) {
    const cpu = cpuGroup(report, y)
    parts.push(cpu.svg)
    y += cpu.height
  }
  parts.push(text(20, y + 8, `autocannon and redis-server (appendonly, fsync everysec) share the machine with the gateway; load average at start ${report.machine.loadAverageAtStart.toFixed(1)}. Figures: ${report.only === undefined ? 'docs/bench/latest.json' : 'bench/results/partial.json'}`, 'font-size="11" fill="#555"'))
  y += 14
  const height = y + 10
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="13">`,
    '<rect width="100%" height="100%" fill="#fff"/>',
    ...parts,
    '</svg>',
    ''
  ].join('\n')
}
