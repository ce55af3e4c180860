import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { buildImage, containerLogs, containerState, docker, dockerOk, imageSize, removeContainers } from '../../scripts/lib/docker.js'
import { compiledScript, repoPath } from '../../scripts/lib/paths.js'
import { answers200, freePort, waitUntil } from '../../scripts/lib/process.js'
import { exec, postJson, readmeInferBody, readmeTextDirectionExample, testImage } from '../helpers/containers.js'

// The CPU image, built from this checkout and run as the README runs it, with host
// networking on a free loopback port: small enough to pull fast, serves the README's
// requests, runs as uid 1000, reports healthy, and on `docker stop` drains and exits 0.

const MAX_IMAGE_BYTES = 300e6
/** Start-up with models loading on a busy 2-core machine stays well under this. */
const READY_WITHIN_MS = 90_000

let image: string
before(async () => { image = await testImage() }, { timeout: 900_000 })

/** `docker run -d` with host networking on a free loopback port; removed after the tests. */
async function runGateway (name: string, extra: readonly string[] = []): Promise<{ name: string, url: string }> {
  const port = await freePort()
  await removeContainers(name)
  await dockerOk(['run', '-d', '--name', name, '--network', 'host', '--stop-timeout', '35', '-e', 'HOST=127.0.0.1', '-e', `PORT=${port}`, ...extra, image], { timeoutMs: 60_000 })
  const url = `http://127.0.0.1:${port}`
  const ready = await waitUntil(async () => {
    if (!(await containerState(name)).running) throw new Error('exited')
    return answers200(`${url}/health/ready`)
  }, READY_WITHIN_MS, 200)
  assert.ok(ready, `${name} not ready within ${READY_WITHIN_MS / 1000} s:\n${(await containerLogs(name)).slice(-3000)}`)
  return { name, url }
}

/** `docker stop` (SIGTERM, then SIGKILL after --stop-timeout); how long it took. */
async function stop (name: string): Promise<number> {
  const started = Date.now()
  await dockerOk(['stop', '-t', '35', name], { timeoutMs: 60_000 })
  return Date.now() - started
}

test('the image is at most 300 MB: Node 24 without npm, onnxruntime for linux/x64 only', async () => {
  const bytes = await imageSize(image)
  assert.ok(bytes <= MAX_IMAGE_BYTES, `${image} is ${(bytes / 1e6).toFixed(1)} MB`)
  const ort = 'node_modules/onnxruntime-node/bin/napi-v6'
  const out = await dockerOk(['run', '--rm', '--network', 'host', '--entrypoint', 'sh', image, '-c',
    `ls ${ort}; echo --; ls ${ort}/linux; echo --; node --version; echo --; command -v npm || echo no npm`], { timeoutMs: 60_000 })
  const [platforms, arches, version, npm] = out.split('\n--\n').map((s) => s.trim())
  assert.equal(platforms, 'linux')
  assert.equal(arches, 'x64')
  assert.match(version, /^v24\./)
  assert.equal(npm, 'no npm')
})

describe('a container run as the README runs it', { timeout: 240_000 }, () => {
  const name = `spotgate-test-${process.pid}`
  let url: string
  before(async () => { url = (await runGateway(name)).url }, { timeout: 120_000 })
  after(() => removeContainers(name))

  test('answers the README\'s /infer and text_direction examples', async () => {
    const infer = await postJson(`${url}/infer`, readmeInferBody(), { 'Idempotency-Key': `order-${process.pid}` })
    assert.equal(infer.status, 200, JSON.stringify(infer.body))
    const probabilities = infer.body.outputs[0].data as number[]
    assert.equal(probabilities.length, 3)
    assert.ok(Math.abs(probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-5)

    const { body, answer } = readmeTextDirectionExample()
    const direction = await postJson(`${url}/v2/models/text_direction/infer`, body)
    assert.equal(direction.status, 200, JSON.stringify(direction.body))
    assert.deepEqual(direction.body.outputs[0].shape, answer.outputs[0].shape)
    direction.body.outputs[0].data.forEach((p: number, i: number) => assert.ok(Math.abs(p - answer.outputs[0].data[i]) < 1e-4, `${p} vs the README's ${answer.outputs[0].data[i]}`))
  })

  test('runs as uid 1000, its model instance processes too', async () => {
    assert.equal(await dockerOk(['inspect', '--format', '{{.Config.User}}', name]), '1000:1000')
    // No ps in a slim image: /proc says who runs what.
    const processes = (await exec(name, 'sh', '-c', 'for p in /proc/[0-9]*; do echo "$(awk \'/^Uid:/ {print $2}\' $p/status 2>/dev/null) $(tr "\\0" " " < $p/cmdline 2>/dev/null)"; done'))
      .split('\n').filter((line) => line.includes('node '))
    assert.ok(processes.some((line) => line.includes('dist/src/main.js')), processes.join('\n'))
    assert.ok(processes.some((line) => line.includes('model-process.js')), `model instances run as child processes:\n${processes.join('\n')}`)
    for (const line of processes) assert.match(line, /^1000 /)
  })

  test('its HEALTHCHECK turns healthy', async () => {
    // --interval=10s: the first check runs 10 s after the start.
    const healthy = await waitUntil(async () => (await containerState(name)).health === 'healthy', 60_000, 500)
    assert.ok(healthy, `health: ${(await containerState(name)).health ?? 'none'}`)
  })

  test('docker stop drains it and it exits 0', async () => {
    const ms = await stop(name)
    const state = await containerState(name)
    const logs = await containerLogs(name)
    assert.equal(state.status, 'exited')
    assert.equal(state.exitCode, 0, logs.slice(-2000))
    assert.match(logs, /"msg":"readiness flipped to 503; draining"/)
    assert.match(logs, /"msg":"drained; exiting"/)
    assert.ok(ms < 35_000, `stopped in ${ms} ms, before Docker's SIGKILL`)
  })
})

test('runs on a read-only root filesystem with a writable /tmp, as deploy/k8s runs it', { timeout: 180_000 }, async (t) => {
  const name = `spotgate-test-ro-${process.pid}`
  t.after(() => removeContainers(name))
  const { url } = await runGateway(name, ['--read-only', '--tmpfs', '/tmp'])
  const infer = await postJson(`${url}/infer`, readmeInferBody(), { 'Idempotency-Key': `ro-${process.pid}` })
  assert.equal(infer.status, 200, JSON.stringify(infer.body))
  await stop(name)
  assert.equal((await containerState(name)).exitCode, 0, (await containerLogs(name)).slice(-2000))
})

test('the image\'s install guard fails on a node_modules that lost a package', { timeout: 120_000 }, async () => {
  const intact = await docker(['run', '--rm', '--network', 'host', image, 'node', 'dist/scripts/check-install.js'], { timeoutMs: 60_000 })
  assert.equal(intact.code, 0, intact.stderr)
  const broken = await docker(['run', '--rm', '--network', 'host', '--user', 'root', '--entrypoint', 'sh', image, '-c',
    'rm -rf node_modules/avvio && node dist/scripts/check-install.js'], { timeoutMs: 60_000 })
  assert.equal(broken.code, 1)
  assert.match(broken.stderr, /node_modules\/avvio: missing/)
  assert.match(broken.stderr, /fastify: cannot be loaded: Cannot find module 'avvio'/)
})

test('npm run cold-start times the image and the process to /health/ready, by phase', { timeout: 300_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'spotgate-cold-start-test-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  // From its TypeScript source under tsx, compiled otherwise (as npm run cold-start runs it).
  const script = import.meta.url.endsWith('.ts') ? [...process.execArgv, repoPath('scripts', 'cold-start.ts')] : [compiledScript('cold-start.js')]
  const file = join(dir, 'cold-start.json')
  const run = spawnSync(process.execPath, [...script, '--runs', '1', '--image', image, '--json', file], { encoding: 'utf8', timeout: 240_000 })
  assert.equal(run.status, 0, run.stderr + run.stdout)
  const report = JSON.parse(await readFile(file, 'utf8'))
  assert.equal(report.imageBytes, await imageSize(image))
  for (const kind of ['process', 'image']) {
    const phases = report[kind].median
    for (const phase of ['processStart', 'modelLoad', 'warmup', 'listeningToReady', 'readyTo200', 'total']) {
      assert.equal(typeof phases[phase], 'number', `${kind}.${phase}`)
      assert.ok(phases[phase] >= 0, `${kind}.${phase}`)
    }
    assert.ok(phases.total >= phases.processStart + phases.listeningToReady, `${kind}: the phases fit in the total`)
    assert.ok(phases.listeningToReady >= phases.modelLoad, `${kind}: the slowest model loaded between listening and ready`)
  }
  assert.equal(typeof report.image.median.container, 'number')
  assert.equal(report.process.median.container, undefined)
  assert.match(run.stdout, /total: start → \/health\/ready 200/)
})

test('Dockerfile.cuda builds as far as this machine reaches', { timeout: 900_000 }, async (t) => {
  // Its build stage is the CPU image's, so this is mostly cache. Its dependencies stage
  // downloads the CUDA provider from nuget.org and its runtime is nvidia/cuda: neither is
  // reachable without internet access and Docker Hub.
  const log = await buildImage(`spotgate-cuda-build:${process.pid}`, { dockerfile: 'Dockerfile.cuda', target: 'build' })
  t.after(() => docker(['rmi', `spotgate-cuda-build:${process.pid}`], { timeoutMs: 60_000 }))
  assert.match(log, /Successfully tagged/)
  const cuda = (await readFile(repoPath('Dockerfile.cuda'), 'utf8')).match(/^ARG CUDA_IMAGE=(\S+)$/m)?.[1] ?? 'nvidia/cuda'
  if ((await docker(['image', 'inspect', cuda], { timeoutMs: 30_000 })).code !== 0) {
    t.diagnostic(`the deps and runtime stages need nuget.org and ${cuda}; not built here`)
    return
  }
  await buildImage(`spotgate-cuda:${process.pid}`, { dockerfile: 'Dockerfile.cuda' })
  t.after(() => docker(['rmi', `spotgate-cuda:${process.pid}`], { timeoutMs: 60_000 }))
})
