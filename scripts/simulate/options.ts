import { parseArgs } from 'node:util'
import { InputError } from './input-error.js'
import { POLICIES, type FleetShape, type Policy, type Settings } from './fleet.js'

// The command line of `npm run simulate` (README, "What does spot save?"), checked the way the
// server checks its configuration: a bad value is one line naming the flag.

export const USAGE = `usage:
  npm run simulate -- --trace NAME|FILE [--spot N|all] [--on-demand K] [--rps R] [--capacity-rps C]
                      [--notice-s S] [--cold-start-s S] [--price-spot P] [--price-on-demand P] [--zone Z]
                      [--policy fixed|fallback] [--replay-delay-s S] [--max-queue N] [--json FILE] [--svg FILE]
  npm run simulate -- --replay NAME|FILE [--speed X] [--max-instances N] [--clients N] [--hours H] [--zone Z] [--keep-logs] [--json FILE]
traces: spotserve-g4dn, spotserve-0203, spotserve-0304, spotserve-0506, skynomad-gcp-h100, or a file in one of their formats`

/** Defaults, and where each comes from. */
export const DEFAULTS = {
  rps: 750,
  capacityRps: 100,
  /** A VM boot, image pull and model load before a replica serves; billed all the same. */
  coldStartS: 120,
  /**
   * From a hand-off to the replayed request joining a survivor's queue. `npm run chaos`
   * (README) measured a killed instance's requests answered by peers 2.9 s after the
   * kill on average (3.4 s at most), lease expiry included; `--replay` at 40× measured
   * 1.8 to 6.3 s on average from a drain's hand-off to the peer's answer.
   */
  replayDelayS: 3,
  /** spotgate's defaults: DRAIN_SAFETY_MARGIN_MS, LEASE_TTL_MS, MAX_QUEUE_SIZE. */
  drainMarginS: 5,
  leaseTtlS: 5,
  maxQueue: 1024,
  policy: 'fixed' as Policy,
  speed: 40,
  maxInstances: 4,
  clients: 6
} as const

export interface SimulateOptions {
  readonly mode: 'simulate'
  readonly trace: string
  readonly zone?: string
  /** undefined: as many as the load needs. */
  readonly spot?: number
  readonly shape: Omit<FleetShape, 'spot'>
  /** noticeS undefined: the trace's cloud's. */
  readonly settings: Omit<Settings, 'noticeS'> & { noticeS?: number }
  readonly priceSpot?: number
  readonly priceOnDemand?: number
  readonly json?: string
  readonly svg?: string
}

export interface ReplayOptions {
  readonly mode: 'replay'
  readonly trace: string
  readonly zone?: string
  readonly speed: number
  readonly maxInstances: number
  readonly clients: number
  /** Replay only the first hours of the trace. */
  readonly hours?: number
  /** Keep the processes' logs even when the replay passes (they are kept when it fails). */
  readonly keepLogs: boolean
  readonly json?: string
}

const SIMULATE_ONLY = ['spot', 'on-demand', 'rps', 'capacity-rps', 'notice-s', 'cold-start-s', 'price-spot', 'price-on-demand', 'policy', 'replay-delay-s', 'max-queue', 'svg'] as const
const REPLAY_ONLY = ['speed', 'max-instances', 'clients', 'hours', 'keep-logs'] as const

/** The largest fleet simulated: past it the engine's per-replica state is the limit, not the question. */
const MAX_REPLICAS = 100_000
/** Dollars per replica-hour; more is a unit mistake (cents, a month). */
const MAX_PRICE = 100_000

export function parseOptions (argv: readonly string[]): SimulateOptions | ReplayOptions | 'help' {
  let values: Record<string, string | boolean | undefined>
  try {
    ({ values } = parseArgs({
      args: joinNegativeValues(argv),
      strict: true,
      allowPositionals: false,
      options: {
        trace: { type: 'string' },
        replay: { type: 'string' },
        spot: { type: 'string' },
        'on-demand': { type: 'string' },
        rps: { type: 'string' },
        'capacity-rps': { type: 'string' },
        'notice-s': { type: 'string' },
        'cold-start-s': { type: 'string' },
        'price-spot': { type: 'string' },
        'price-on-demand': { type: 'string' },
        zone: { type: 'string' },
        policy: { type: 'string' },
        'replay-delay-s': { type: 'string' },
        'max-queue': { type: 'string' },
        speed: { type: 'string' },
        'max-instances': { type: 'string' },
        clients: { type: 'string' },
        hours: { type: 'string' },
        'keep-logs': { type: 'boolean' },
        json: { type: 'string' },
        svg: { type: 'string' },
        help: { type: 'boolean', short: 'h' }
      }
    }))
  } catch (error) {
    const { code, message } = error as { code?: string, message: string }
    const option = /'([^']+)'/.exec(message)?.[1]
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new InputError(`unknown option ${option ?? message} (--help lists them)`)
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') throw new InputError(`unexpected argument ${option ?? ''} (--help lists the options)`)
    throw new InputError(message.split('\n')[0])
  }
  if (values.help === true) return 'help'
  const text = (name: string): string | undefined => values[name] as string | undefined

  const trace = text('trace')
  const replay = text('replay')
  if (trace !== undefined && replay !== undefined) throw new InputError('give --trace (simulate) or --replay (real processes), not both')
  if (trace === undefined && replay === undefined) throw new InputError('--trace NAME|FILE or --replay NAME|FILE is required (--help for the rest)')
  const zone = text('zone')
  if (zone !== undefined && zone.trim() === '') throw new InputError('--zone: empty')
  const json = nonEmpty('json', text('json'))

  if (replay !== undefined) {
    const wrong = SIMULATE_ONLY.find((name) => values[name] !== undefined)
    if (wrong !== undefined) throw new InputError(`--${wrong} is for --trace; --replay takes --speed, --max-instances, --clients, --hours, --zone, --keep-logs and --json`)
    return {
      mode: 'replay',
      trace: nonEmpty('replay', replay) as string,
      zone,
      speed: number('speed', text('speed'), { min: 1, max: 1000 }) ?? DEFAULTS.speed,
      maxInstances: number('max-instances', text('max-instances'), { min: 2, max: 12, integer: true }) ?? DEFAULTS.maxInstances,
      clients: number('clients', text('clients'), { min: 1, max: 64, integer: true }) ?? DEFAULTS.clients,
      hours: number('hours', text('hours'), { above: 0 }),
      keepLogs: values['keep-logs'] === true,
      json
    }
  }

  const wrong = REPLAY_ONLY.find((name) => values[name] !== undefined)
  if (wrong !== undefined) throw new InputError(`--${wrong} is for --replay, not --trace`)
  const spotText = text('spot')
  const spot = spotText === 'all' ? Infinity : number('spot', spotText, { min: 0, max: MAX_REPLICAS, integer: true, hint: 'or "all"' })
  const onDemand = number('on-demand', text('on-demand'), { min: 0, max: MAX_REPLICAS, integer: true }) ?? 0
  const policy = text('policy') ?? DEFAULTS.policy
  if (!(POLICIES as readonly string[]).includes(policy)) throw new InputError(`--policy: expected ${POLICIES.join(' or ')}, got ${JSON.stringify(policy)}`)
  if (spot === 0 && onDemand === 0 && policy !== 'fallback') throw new InputError('the fleet has no replicas: --spot and --on-demand are both 0 (and no --policy fallback to launch on-demand ones)')
  const rps = number('rps', text('rps'), { above: 0 }) ?? DEFAULTS.rps
  const capacityRps = number('capacity-rps', text('capacity-rps'), { above: 0 }) ?? DEFAULTS.capacityRps
  if (rps / capacityRps > MAX_REPLICAS) throw new InputError(`--rps ${rps} needs ${Math.ceil(rps / capacityRps)} replicas of --capacity-rps ${capacityRps}: more than ${MAX_REPLICAS}`)
  return {
    mode: 'simulate',
    trace: nonEmpty('trace', trace) as string,
    zone,
    spot,
    shape: { onDemand, policy: policy as Policy },
    settings: {
      rps,
      capacityRps,
      noticeS: number('notice-s', text('notice-s'), { min: 0, max: 3600 }),
      coldStartS: number('cold-start-s', text('cold-start-s'), { min: 0, max: 86_400 }) ?? DEFAULTS.coldStartS,
      replayDelayS: number('replay-delay-s', text('replay-delay-s'), { min: 0, max: 3600 }) ?? DEFAULTS.replayDelayS,
      drainMarginS: DEFAULTS.drainMarginS,
      leaseTtlS: DEFAULTS.leaseTtlS,
      queuePerReplica: number('max-queue', text('max-queue'), { min: 0, integer: true }) ?? DEFAULTS.maxQueue
    },
    priceSpot: number('price-spot', text('price-spot'), { min: 0, max: MAX_PRICE }),
    priceOnDemand: number('price-on-demand', text('price-on-demand'), { min: 0, max: MAX_PRICE }),
    json,
    svg: nonEmpty('svg', text('svg'))
  }
}

/** `--spot -1` as `--spot=-1`, so a negative number is refused by its check, not taken for an option. */
function joinNegativeValues (argv: readonly string[]): string[] {
  const args: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const next = argv[i + 1]
    if (argv[i].startsWith('--') && !argv[i].includes('=') && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      args.push(`${argv[i]}=${next}`)
      i++
    } else {
      args.push(argv[i])
    }
  }
  return args
}

interface Bounds {
  readonly min?: number
  readonly above?: number
  readonly max?: number
  readonly integer?: boolean
  readonly hint?: string
}

function number (name: string, value: string | undefined, bounds: Bounds): number | undefined {
  if (value === undefined) return undefined
  const parsed = /^\s*-?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?\s*$/i.test(value) ? Number(value) : NaN
  const what = [
    bounds.integer === true ? 'a whole number' : 'a number',
    bounds.above !== undefined ? `> ${bounds.above}` : bounds.min !== undefined ? `>= ${bounds.min}` : '',
    bounds.max !== undefined ? `and <= ${bounds.max}` : '',
    bounds.hint ?? ''
  ].filter(Boolean).join(' ')
  const ok = Number.isFinite(parsed) &&
    (bounds.integer !== true || Number.isInteger(parsed)) &&
    (bounds.min === undefined || parsed >= bounds.min) &&
    (bounds.above === undefined || parsed > bounds.above) &&
    (bounds.max === undefined || parsed <= bounds.max)
  if (!ok) throw new InputError(`--${name}: expected ${what}, got ${JSON.stringify(value)}`)
  return parsed
}

function nonEmpty (name: string, value: string | undefined): string | undefined {
  if (value !== undefined && value.trim() === '') throw new InputError(`--${name}: empty`)
  return value
}
