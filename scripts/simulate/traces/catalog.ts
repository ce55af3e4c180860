import { existsSync, readFileSync, statSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { repoPath } from '../../lib/paths.js'
import { InputError } from '../input-error.js'
import type { Cloud, Prices, SpotInstance, Trace } from '../trace.js'
import { parsePriceCache, parseProbesCsv, PROBES_HEADER, regionOf } from './skynomad.js'
import { parseSpotServeCsv, parseSpotServeJsonLines } from './spotserve.js'

// The traces spotgate ships (sim/traces/, each folder with its LICENSE and NOTICE) by
// name, and trace files of the same formats by path.

/** The SpotServe paper's prices (§6.2): g4dn.12xlarge, 4 × T4. */
const SPOTSERVE_PRICES: Prices = {
  spot: new Map([['', 1.9]]),
  onDemand: 3.9,
  unit: 'USD/h per g4dn.12xlarge (SpotServe paper §6.2)'
}

interface Shipped {
  readonly file: string
  readonly description: string
}

export const SHIPPED: Readonly<Record<string, Shipped>> = {
  'spotserve-g4dn': { file: 'spotserve-g4dn/g4dn.csv', description: 'AWS g4dn spot instances, per-instance events (SpotServe, ASPLOS \'24)' },
  'spotserve-0203': { file: 'spotserve-g4dn/trace_0203.txt', description: 'a replay segment of the SpotServe g4dn trace' },
  'spotserve-0304': { file: 'spotserve-g4dn/trace_0304.txt', description: 'a replay segment of the SpotServe g4dn trace' },
  'spotserve-0506': { file: 'spotserve-g4dn/trace_0506.txt', description: 'a replay segment of the SpotServe g4dn trace' },
  'skynomad-gcp-h100': { file: 'skynomad-gcp-h100/h100-16-probes.csv', description: 'GCP H100 spot capacity probes, 13 zones (SkyNomad, NSDI \'27)' }
}

/** sim/traces/ of this checkout. */
export function tracesDirectory (): string {
  return repoPath('sim', 'traces')
}

export interface LoadOptions {
  /** Keep one zone of a trace that has zones. */
  readonly zone?: string
  /** Replace the trace's spot price (every zone) and on-demand price. */
  readonly spotPrice?: number
  readonly onDemandPrice?: number
}

/** A shipped trace by name, or a trace file by path. */
export function loadTrace (nameOrFile: string, options: LoadOptions = {}): Trace {
  return withPrices(readTrace(nameOrFile, options), options.spotPrice, options.onDemandPrice)
}

function readTrace (nameOrFile: string, { zone, spotPrice, onDemandPrice }: LoadOptions): Trace {
  const shipped = SHIPPED[nameOrFile]
  const path = shipped === undefined ? nameOrFile : join(tracesDirectory(), shipped.file)
  if (shipped === undefined && !(existsSync(path) && statSync(path).isFile())) {
    throw new InputError(`unknown trace ${JSON.stringify(nameOrFile)}: not a shipped trace (${Object.keys(SHIPPED).join(', ')}) nor a file`)
  }
  const name = nameOrFile
  const label = shipped === undefined ? nameOrFile : basename(path)
  const text = readFileSync(path, 'utf8')
  const first = text.trimStart().split(/\r?\n/, 1)[0] ?? ''

  if (first.startsWith(PROBES_HEADER)) {
    const probes = parseProbesCsv(text, label, zone)
    const description = shipped?.description ?? 'GCP spot capacity probes'
    if (spotPrice !== undefined && onDemandPrice !== undefined) {
      return build(name, description, 'gcp', probes, { spot: new Map(probes.zones.map((z) => [z, spotPrice])), onDemand: onDemandPrice, unit: '' })
    }
    const pricesFile = join(dirname(path), 'gcp-price-cache.json')
    const fallback = join(tracesDirectory(), 'skynomad-gcp-h100', 'gcp-price-cache.json')
    const priceFile = existsSync(pricesFile) ? pricesFile : fallback
    const prices = gcpPrices(probes.zones, parsePriceCache(readFileSync(priceFile, 'utf8'), basename(priceFile)), basename(priceFile))
    return build(name, description, 'gcp', probes, prices)
  }
  if (zone !== undefined) throw new InputError(`--zone: ${name} is one pool of instances, without zones (--zone is for capacity traces such as skynomad-gcp-h100)`)
  if (first.startsWith('[')) return build(name, shipped?.description ?? 'SpotServe-format event segment', 'aws', { ...parseSpotServeJsonLines(text, label), zones: [] }, SPOTSERVE_PRICES)
  if (/^[^,]*,\s*(add|remove)\s*,/.test(first)) return build(name, shipped?.description ?? 'SpotServe-format event log', 'aws', { ...parseSpotServeCsv(text, label), zones: [] }, SPOTSERVE_PRICES)
  throw new InputError(`${label}: not a trace format the simulator reads (first line ${JSON.stringify(first.slice(0, 60))}); expected SpotServe CSV "ms,add|remove,node", SpotServe JSON lines [ms, "add", {"nodes": [...]}] or the probes CSV "${PROBES_HEADER},..."`)
}

function build (name: string, description: string, cloud: Cloud, parsed: { instances: SpotInstance[], spanS: number, zones: string[] }, prices: Prices): Trace {
  return { name, description, cloud, spanS: parsed.spanS, instances: parsed.instances, zones: parsed.zones, prices }
}

/**
 * Per-zone spot prices from the region's price, per GPU (the probes launched
 * a3-highgpu-1g, one H100; the cache prices a3-highgpu-8g, so ÷ 8). On-demand: the
 * cheapest region among the zones, where an operator would run on-demand replicas.
 */
function gcpPrices (zones: readonly string[], cache: ReturnType<typeof parsePriceCache>, file: string): Prices {
  const spot = new Map<string, number>()
  let onDemand = Infinity
  for (const zone of zones) {
    const price = cache.get(regionOf(zone))
    if (price === undefined) throw new InputError(`${file}: no price for region ${regionOf(zone)} (zone ${zone})`)
    spot.set(zone, price.spot / price.gpus)
    onDemand = Math.min(onDemand, price.onDemand / price.gpus)
  }
  return { spot, onDemand, unit: 'USD/h per H100 (a3-highgpu-8g list price ÷ 8, GCP Billing Catalog 2025-10-23)' }
}

/** The trace with every zone's spot price and/or the on-demand price replaced. */
function withPrices (trace: Trace, spot?: number, onDemand?: number): Trace {
  if (spot === undefined && onDemand === undefined) return trace
  const spotPrices = spot === undefined ? trace.prices.spot : new Map([...trace.prices.spot.keys()].map((zone) => [zone, spot]))
  const given = [spot !== undefined && 'spot', onDemand !== undefined && 'on-demand'].filter(Boolean).join(' and ')
  const unit = trace.prices.unit === '' ? 'per replica-hour (from the command line)' : `${trace.prices.unit.split(' (')[0]} (${given} from the command line)`
  return { ...trace, prices: { spot: spotPrices, onDemand: onDemand ?? trace.prices.onDemand, unit } }
}
