// Usage: npm run test:containers
//
// Builds the CPU image from this checkout and runs test/containers/*.test.ts against it:
// the image alone (size, the README's requests, uid 1000, HEALTHCHECK, docker stop →
// drain → exit 0) and the Compose topology on host networking (a spot notice under load
// through HAProxy). Containers use the host's network on free loopback ports only.
//
// Docker: the daemon DOCKER_HOST (or the default socket) names, when one answers.
// Otherwise, where the Docker-less development machines keep their setup script
// (DOCKER_SETUP, default ../shared/tools/local-docker.sh: a daemon without bridge
// networking, and stand-in base images built from Debian and npm packages), that
// script's daemon: started, and stopped again at the end, when this runs as root.
// Compose: `docker compose`, or `docker-compose` (installed from apt when root).
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { buildImage, docker, dockerAnswers, dockerSetupScript, dockerSetupSocket, imageSize, runCommand } from './lib/docker.js'
import { repoPath } from './lib/paths.js'
import { findBinary } from './lib/process.js'

const IMAGE = process.env.SPOTGATE_TEST_IMAGE ?? 'spotgate:test'
/** What the setup script's `base` and `extras` phases make, and the tests need. */
const STAND_INS = ['node:24-bookworm-slim', 'node:24-bookworm', 'debian:bookworm-slim', 'redis:7-bookworm', 'haproxy:2.6', 'prom/prometheus:debian']

const isRoot = process.getuid?.() === 0
const say = (line: string): void => console.log(`test:containers: ${line}`)

function fail (message: string): never {
  console.error(`test:containers: ${message}`)
  process.exit(1)
}

/** Runs the setup script's phases with its output shown; throws unless it exits 0. */
function setup (script: string, ...phases: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [script, ...phases], { stdio: ['ignore', 'inherit', 'inherit'] })
    child.once('error', reject)
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`${script} ${phases.join(' ')} exited ${code ?? 'on a signal'}`))))
  })
}

async function missingImages (names: readonly string[]): Promise<string[]> {
  const missing: string[] = []
  for (const name of names) {
    if ((await docker(['image', 'inspect', name], { timeoutMs: 30_000 })).code !== 0) missing.push(name)
  }
  return missing
}

/** Finds a daemon, or starts the setup script's; returns the script when this process started its daemon. */
async function findDocker (): Promise<{ startedWith?: string }> {
  if (findBinary('docker') === undefined) {
    if (dockerSetupScript() === undefined || !isRoot) fail('no docker command; install Docker, or run as root where the setup script can install it')
  } else if (await dockerAnswers()) {
    say(`Docker daemon at ${process.env.DOCKER_HOST ?? 'the default socket'}`)
    return {}
  }
  const script = dockerSetupScript()
  if (script === undefined) fail(`no Docker daemon answers${process.env.DOCKER_HOST === undefined ? '' : ` at ${process.env.DOCKER_HOST}`}; start one, or set DOCKER_SETUP to a script that starts one`)
  process.env.DOCKER_HOST = dockerSetupSocket()
  let startedWith: string | undefined
  if (!await dockerAnswers()) {
    if (!isRoot) fail(`no Docker daemon answers; starting one takes root: sudo ${script} install daemon base extras, then DOCKER_HOST=${dockerSetupSocket()} npm run test:containers`)
    say(`starting a Docker daemon without bridge networking: ${script}`)
    await setup(script, 'install', 'daemon')
    startedWith = script
  } else {
    say(`Docker daemon at ${dockerSetupSocket()} (${script})`)
  }
  const missing = await missingImages(STAND_INS)
  if (missing.length > 0) {
    if (!isRoot) fail(`the stand-in images ${missing.join(', ')} are missing; make them with: sudo ${script} base extras`)
    say(`making stand-in images: ${missing.join(', ')}`)
    await setup(script, 'base', 'extras')
  }
  return { startedWith }
}

/** `docker compose` or `docker-compose`, installing the latter from apt when root and neither is there; throws without. */
async function findCompose (): Promise<string[]> {
  if ((await docker(['compose', 'version'], { timeoutMs: 15_000 })).code === 0) return ['docker', 'compose']
  if (findBinary('docker-compose') !== undefined) return ['docker-compose']
  if (!isRoot || findBinary('apt-get') === undefined) throw new Error('no Compose: install the docker compose plugin, or docker-compose (Debian: apt-get install docker-compose)')
  say('installing docker-compose from apt')
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const installed = await runCommand('apt-get', ['update', '-qq'], { env, timeoutMs: 300_000 }).then(() =>
    runCommand('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'docker-compose'], { env, timeoutMs: 600_000 }))
  if (installed.code !== 0 || findBinary('docker-compose') === undefined) throw new Error(`could not install docker-compose: ${installed.stderr.slice(-1000)}`)
  return ['docker-compose']
}

function runTests (env: NodeJS.ProcessEnv): Promise<number> {
  const files = readdirSync(repoPath('test', 'containers')).filter((f) => f.endsWith('.test.ts')).sort().map((f) => repoPath('test', 'containers', f))
  return new Promise((resolve) => {
    const child = spawn(repoPath('node_modules', '.bin', 'tsx'), ['--test', '--test-concurrency=1', ...files], { stdio: 'inherit', env, cwd: repoPath() })
    child.once('error', (error) => { console.error(error.message); resolve(1) })
    child.once('close', (code) => resolve(code ?? 1))
  })
}

const { startedWith } = await findDocker()
let code = 1
try {
  const compose = await findCompose()
  const started = Date.now()
  say(`building ${IMAGE} from this checkout`)
  await buildImage(IMAGE)
  say(`built ${IMAGE} in ${((Date.now() - started) / 1000).toFixed(0)} s: ${((await imageSize(IMAGE)) / 1e6).toFixed(0)} MB`)
  code = await runTests({ ...process.env, SPOTGATE_TEST_IMAGE: IMAGE, SPOTGATE_COMPOSE: JSON.stringify(compose), DOCKER_BUILDKIT: '0' })
} catch (error) {
  console.error(`test:containers: ${(error as Error).message}`)
} finally {
  if (startedWith !== undefined) {
    say('stopping the Docker daemon it started')
    await setup(startedWith, 'stop').catch((error: Error) => console.error(error.message))
  }
}
process.exit(code)
