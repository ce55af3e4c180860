import { readFileSync } from 'node:fs'
import { parse, stringify } from 'yaml'
import { buildImage, docker, dockerOk, runCommand, type CommandResult } from '../../scripts/lib/docker.js'
import { repoPath } from '../../scripts/lib/paths.js'

// For test/containers: the image under test, the Compose command, and what the README
// promises (its requests and answers), so the containers are held to the documentation.
// `npm run test:containers` (scripts/test-containers.ts) finds or starts the daemon,
// builds the image and sets the variables read here.

/** The image under test: built by `npm run test:containers`, or here when a test file runs alone. */
export async function testImage (): Promise<string> {
  const tag = process.env.SPOTGATE_TEST_IMAGE ?? 'spotgate:test'
  if ((await docker(['image', 'inspect', tag], { timeoutMs: 30_000 })).code !== 0) await buildImage(tag)
  return tag
}

/** `docker compose` (v2) where the plugin is installed, else `docker-compose` (v1). */
export async function composeCommand (): Promise<string[]> {
  if (process.env.SPOTGATE_COMPOSE !== undefined) return JSON.parse(process.env.SPOTGATE_COMPOSE) as string[]
  if ((await docker(['compose', 'version'], { timeoutMs: 15_000 })).code === 0) return ['docker', 'compose']
  return ['docker-compose']
}

/** Runs Compose on docker-compose.yml with `files` over it, as project `project`, with `env` for interpolation. */
export async function compose (project: string, files: readonly string[], env: Record<string, string>, args: readonly string[], timeoutMs = 180_000): Promise<CommandResult> {
  const [command, ...prefix] = await composeCommand()
  const fileArgs = ['docker-compose.yml', ...files].flatMap((file) => ['-f', repoPath(file)])
  return runCommand(command, [...prefix, '-p', project, ...fileArgs, ...args], { timeoutMs, env: { ...process.env, ...env, DOCKER_BUILDKIT: '0' } })
}

/** The Prometheus image: the one docker-compose.yml names when the daemon has it, else a stand-in. */
export async function prometheusImage (): Promise<string> {
  if (process.env.PROMETHEUS_IMAGE !== undefined) return process.env.PROMETHEUS_IMAGE
  const shipped = 'prom/prometheus:v2.53.2'
  return (await docker(['image', 'inspect', shipped], { timeoutMs: 30_000 })).code === 0 ? shipped : 'prom/prometheus:debian'
}

/**
 * deploy/prometheus/prometheus.yml with loopback targets: each gateway by its address,
 * labelled with its name (the shipped relabelling turns `gateway-1:8080` into that
 * name, and would turn every loopback address into one `127.0.0.1`), HAProxy's exporter
 * by its address. Everything else is as shipped.
 */
export function renderPrometheusConfig (template: string, targets: { gateways: ReadonlyArray<{ name: string, address: string }>, haproxy: string }): string {
  const config = parse(template) as { scrape_configs: Array<Record<string, unknown>> }
  for (const job of config.scrape_configs) {
    if (job.job_name === 'spotgate') {
      job.static_configs = targets.gateways.map((g) => ({ targets: [g.address], labels: { instance: g.name } }))
      delete job.relabel_configs
    } else if (job.job_name === 'haproxy') {
      job.static_configs = [{ targets: [targets.haproxy] }]
    }
  }
  return stringify(config)
}

const README = (): string => readFileSync(repoPath('README.md'), 'utf8')

/** The body of the README's first `curl ... /infer ... -d '{...}'` (Quick start). */
export function readmeInferBody (): unknown {
  const match = /curl -s localhost:8080\/infer [^\n]*-d '(\{[\s\S]*?\})'\n/.exec(README())
  if (match === null) throw new Error('README.md has no `curl ... /infer ... -d \'{...}\'` example')
  return JSON.parse(match[1])
}

/**
 * The README's text_direction example: the checkerboard its `node -e` generates, and the
 * answer the README shows for it.
 */
export function readmeTextDirectionExample (): { body: unknown, answer: { outputs: Array<{ name: string, shape: number[], data: number[] }> } } {
  const text = README()
  const answer = /```json\n(\{"model_name":"text_direction"[^\n]*\})\n```/.exec(text)
  if (answer === null || !text.includes('((x >> 3) + (y >> 3)) % 2 ? 1 : -1')) throw new Error('README.md lacks the text_direction checkerboard example')
  const [h, w] = [48, 192]
  const data: number[] = []
  for (let c = 0; c < 3; c++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.push(((x >> 3) + (y >> 3)) % 2 ? 1 : -1)
  return { body: { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3, h, w], data }] }, answer: JSON.parse(answer[1]) }
}

/** POSTs JSON; the status and the parsed body. */
export async function postJson (url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number, body: any }> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body), signal: AbortSignal.timeout(15_000) })
  const text = await response.text()
  let parsed: unknown = text
  try { parsed = JSON.parse(text) } catch {}
  return { status: response.status, body: parsed }
}

/** `docker exec` in a running container; stdout, trimmed. */
export function exec (container: string, ...command: string[]): Promise<string> {
  return dockerOk(['exec', container, ...command], { timeoutMs: 30_000 })
}
