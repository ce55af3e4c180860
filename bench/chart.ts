import type { BenchReport, Row, Target } from './report.js'

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

function targetRow (t: Target, y: number): string {
  const scaleMax = Math.max(t.value, t.target) * 1.15
  const barLength = (Math.min(t.value, scaleMax) / scaleMax) * BAR_WIDTH
  const goalX = LABEL_WIDTH + (t.target / scaleMax) * BAR_WIDTH
  const shown = t.unit === 'ms' ? `${t.value.toFixed(1)} ms` : t.value.toFixed(2)
  const goal = `${t.kind === 'min' ? '≥' : '<'} ${t.unit === 'ms' ? `${t.target} ms` : t.target}`
  return [
    `<g><title>${escape(t.description)}</title>${text(LABEL_WIDTH - 10, y + 19, t.label, 'text-anchor="end"')}</g>`,
    `<rect x="${LABEL_WIDTH}" y="${y + 6}" width="${barLength.toFixed(1)}" height="${ROW - 12}" fill="${t.met ? GREEN : RED}" rx="2"/>`,
    `<line x1="${goalX.toFixed(1)}" x2="${goalX.toFixed(1)}" y1="${y + 1}" y2="${y + ROW - 1}" stroke="#000" stroke-width="2" stroke-dasharray="4 2"/>`,
    text(LABEL_WIDTH + BAR_WIDTH + 12, y + 19, `${shown} (goal ${goal}) ${t.met ? 'met' : 'missed'}`, `fill="${t.met ? GREEN : RED}" font-weight="bold"`)
  ].join('\n')
}

function throughputGroup (title: string, rows: readonly Row[], y: number): { svg: string, height: number } {
  const max = Math.max(...rows.map((r) => r.rowsPerSecond)) * 1.05
  const parts = [text(20, y + 16, title, 'font-weight="bold"')]
  rows.forEach((row, index) => {
    const top = y + 24 + index * ROW
    const ceiling = row.name.startsWith('ceiling')
    const length = (row.rowsPerSecond / max) * BAR_WIDTH
    parts.push(
      text(LABEL_WIDTH - 10, top + 19, row.name, 'text-anchor="end"'),
      `<rect x="${LABEL_WIDTH}" y="${top + 6}" width="${length.toFixed(1)}" height="${ROW - 12}" fill="${ceiling ? GREY : BLUE}" rx="2"/>`,
      text(LABEL_WIDTH + length + 8, top + 19, `${Math.round(row.rowsPerSecond).toLocaleString('en-US')}${row.ratio === undefined ? '' : `  (${row.ratio.value.toFixed(2)} × ${row.ratio.to})`}`)
    )
  })
  return { svg: parts.join('\n'), height: 24 + rows.length * ROW + 16 }
}

export function renderChart (report: BenchReport): string {
  const parts: string[] = []
  let y = 20
  parts.push(text(20, y + 10, `spotgate bench, ${report.date.slice(0, 10)}: ${report.machine.cpus} × ${report.machine.cpuModel}, ${report.load.connections} connections, Node ${report.machine.node}`, 'font-size="15" font-weight="bold"'))
  y += 34
  parts.push(text(20, y, 'Targets (bar: measured; dashed line: goal; green met, red missed)', 'font-weight="bold"'))
  y += 8
  for (const t of report.targets) {
    parts.push(targetRow(t, y))
    y += ROW
  }
  y += 20
  const http = report.rows.filter((r) => r.name === 'ceiling: Fastify JSON echo' || (r.name.startsWith('spotgate') && r.ratio?.to === 'echo'))
  const mlp = report.rows.filter((r) => /onnxruntime mlp/.test(r.name) || (r.name.startsWith('spotgate') && r.ratio?.to.includes('mlp')))
  for (const [title, rows] of [['Tiny model: requests/s (grey: HTTP ceiling)', http], ['MLP 512→2048→2048→1000: rows/s (grey: onnxruntime ceilings)', mlp]] as const) {
    if (rows.length === 0) continue
    const group = throughputGroup(title, rows, y)
    parts.push(group.svg)
    y += group.height
  }
  parts.push(text(20, y + 8, `autocannon and redis-server (appendonly, fsync everysec) share the machine with the gateway; load average at start ${report.machine.loadAverageAtStart.toFixed(1)}. Figures: docs/bench/latest.json`, 'font-size="11" fill="#555"'))
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
