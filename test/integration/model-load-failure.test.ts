import assert from 'node:assert/strict'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import type { Metrics } from '../../src/metrics.js'
import type { ServerState } from '../../src/lifecycle/server-state.js'
import { EX_CONFIG } from '../../src/config-error.js'
import { buildTestApp, fileCleanup } from '../helpers/app.js'
import { GatewayProcess } from '../helpers/gateway-process.js'
import { makeRepository, type ModelRepository } from '../helpers/model-repo.js'
import { classifierBody, tensor } from '../helpers/requests.js'

// MODEL_LOAD_FAILURE on a repository where some versions cannot load: `unloadable` (an
// operator onnxruntime does not know), `fixed` (a file that is no ONNX model), classifier
// version 3 (a directory without model.onnx) and `tabular` (a config.json with a typo).

/** The repository: classifier 1 and 2 and `range` load; the rest cannot. */
async function brokenRepository (): Promise<ModelRepository> {
  const repo = await makeRepository(['classifier', 'range', 'unloadable', 'fixed', 'tabular'])
  await writeFile(repo.modelPath('fixed'), 'this is not an ONNX model')
  await mkdir(join(repo.dir, 'classifier', '3'))
  await writeFile(join(repo.dir, 'tabular', 'config.json'), JSON.stringify({ max_batch: 8 }))
  return repo
}

const EXPECTED_INDEX = [
  { name: 'classifier', version: '1', state: 'READY', reason: '' },
  { name: 'classifier', version: '2', state: 'READY', reason: '' },
  { name: 'classifier', version: '3', state: 'UNAVAILABLE', reason: 'classifier/3/model.onnx is missing or unreadable' },
  { name: 'fixed', version: '1', state: 'UNAVAILABLE', reason: /^cannot load fixed\/1\/model\.onnx: .*(protobuf|parsing|Load model)/i },
  { name: 'range', version: '1', state: 'READY', reason: '' },
  { name: 'tabular', version: '1', state: 'UNAVAILABLE', reason: 'tabular/config.json: unknown setting "max_batch"' },
  { name: 'unloadable', version: '1', state: 'UNAVAILABLE', reason: /^cannot load unloadable\/1\/model\.onnx: .*NoSuchOperator/ }
]

function assertIndex (actual: Array<Record<string, string>>, expected: typeof EXPECTED_INDEX): void {
  assert.deepEqual(actual.map((e) => [e.name, e.version, e.state]), expected.map((e) => [e.name, e.version, e.state]))
  for (const [i, entry] of expected.entries()) {
    if (typeof entry.reason === 'string') assert.equal(actual[i].reason, entry.reason, `${entry.name}/${entry.version}`)
    else assert.match(actual[i].reason, entry.reason, `${entry.name}/${entry.version}`)
  }
}

describe('MODEL_LOAD_FAILURE=skip serves the rest', () => {
  let app: FastifyInstance
  let metrics: Metrics
  let state: ServerState
  let repo: ModelRepository
  const fileScope = fileCleanup()

  before(async () => {
    repo = await brokenRepository()
    fileScope.add(repo.cleanup)
    ;({ app, metrics, state } = await buildTestApp(fileScope, { repository: repo, env: { MODEL_LOAD_FAILURE: 'skip' } }))
  })

  after(async () => {
    await fileScope.runAll()
  })

  test('the instance is ready', async () => {
    assert.deepEqual(state.unreadyReasons(), [])
    const response = await app.inject({ method: 'GET', url: '/health/ready' })
    assert.equal(response.statusCode, 200, response.body)
  })

  test('the versions that loaded serve; the default version is the highest that loaded', async () => {
    const response = await app.inject({ method: 'POST', url: '/v2/models/classifier/infer', payload: classifierBody(1) })
    assert.equal(response.statusCode, 200, response.body)
    assert.equal(response.json().model_version, '2')
    const metadata = await app.inject({ method: 'GET', url: '/v2/models/classifier' })
    assert.deepEqual(metadata.json().versions, ['1', '2'])
  })

  test('a version that did not load answers 404 with the reason, on every route', async () => {
    const infer = await app.inject({ method: 'POST', url: '/v2/models/unloadable/infer', payload: { inputs: [tensor('x', 'FP32', [1], [1])] } })
    assert.equal(infer.statusCode, 404)
    assert.match(infer.json().error, /^model 'unloadable' is unavailable: version 1: cannot load unloadable\/1\/model\.onnx: .*NoSuchOperator/)
    assert.ok(!infer.json().error.includes(repo.dir), 'the machine\'s paths stay on the machine')
    const pinned = await app.inject({ method: 'POST', url: '/v2/models/classifier/versions/3/infer', payload: classifierBody(1) })
    assert.equal(pinned.statusCode, 404)
    assert.equal(pinned.json().error, 'model \'classifier\' version \'3\' is unavailable: classifier/3/model.onnx is missing or unreadable')
    const viaInfer = await app.inject({ method: 'POST', url: '/infer', payload: { model: 'tabular', inputs: [] } })
    assert.equal(viaInfer.statusCode, 404)
    assert.match(viaInfer.json().error, /model 'tabular' is unavailable: version 1: tabular\/config\.json: unknown setting "max_batch"/)
    for (const url of ['/v2/models/fixed', '/v2/models/fixed/ready', '/v2/models/classifier/versions/3/ready']) {
      const response = await app.inject({ method: 'GET', url })
      assert.equal(response.statusCode, 404, url)
      assert.match(response.json().error, /is unavailable: /, url)
    }
  })

  test('an unknown model or version is still 404, listing every version the repository has', async () => {
    const unknown = await app.inject({ method: 'POST', url: '/v2/models/resnet/infer', payload: classifierBody(1) })
    assert.equal(unknown.json().error, 'unknown model \'resnet\'')
    const version = await app.inject({ method: 'POST', url: '/v2/models/classifier/versions/9/infer', payload: classifierBody(1) })
    assert.equal(version.json().error, 'model \'classifier\' has no version \'9\' (versions: 1, 2, 3)')
    const none = await app.inject({ method: 'POST', url: '/v2/models/unloadable/versions/2/infer', payload: classifierBody(1) })
    assert.equal(none.json().error, 'model \'unloadable\' has no version \'2\' (versions: 1)')
  })

  test('POST /v2/repository/index lists every version with its state and reason', async () => {
    const response = await app.inject({ method: 'POST', url: '/v2/repository/index' })
    assert.equal(response.statusCode, 200, response.body)
    assertIndex(response.json(), EXPECTED_INDEX)
  })

  test('{"ready": true} lists only the versions that serve', async () => {
    const response = await app.inject({ method: 'POST', url: '/v2/repository/index', payload: { ready: true } })
    assert.equal(response.statusCode, 200, response.body)
    assertIndex(response.json(), EXPECTED_INDEX.filter((e) => e.state === 'READY'))
    const all = await app.inject({ method: 'POST', url: '/v2/repository/index', payload: { ready: false } })
    assert.equal(all.json().length, EXPECTED_INDEX.length)
  })

  test('the index takes no body, an empty JSON body or {}; anything else is 400', async () => {
    for (const [payload, headers] of [['', { 'content-type': 'application/json' }], ['{}', { 'content-type': 'application/json' }], ['null', { 'content-type': 'application/json' }]] as const) {
      const response = await app.inject({ method: 'POST', url: '/v2/repository/index', payload, headers })
      assert.equal(response.statusCode, 200, `${JSON.stringify(payload)}: ${response.body}`)
      assert.equal(response.json().length, EXPECTED_INDEX.length)
    }
    for (const [payload, message] of [['[1]', /must be a JSON object/], ['{"ready": "yes"}', /ready must be true or false/], ['{"ready": ', /JSON/i]] as const) {
      const response = await app.inject({ method: 'POST', url: '/v2/repository/index', payload, headers: { 'content-type': 'application/json' } })
      assert.equal(response.statusCode, 400, payload)
      assert.match(response.json().error, message)
    }
  })

  test('each version that did not load is counted once', async () => {
    const text = await metrics.registry.metrics()
    for (const [model, version] of [['unloadable', '1'], ['fixed', '1'], ['classifier', '3'], ['tabular', '1']]) {
      assert.match(text, new RegExp(`^spotgate_model_load_failures_total\\{model="${model}",version="${version}"\\} 1$`, 'm'))
    }
    assert.doesNotMatch(text, /spotgate_model_load_failures_total\{model="range"/)
  })
})

describe('MODEL_LOAD_FAILURE=exit (the default)', () => {
  test('in process: the first version that cannot load is the error, naming its file', async (t) => {
    const repo = await makeRepository(['classifier', 'unloadable'])
    t.after(repo.cleanup)
    await assert.rejects(buildTestApp(t, { repository: repo }), (error: Error) => {
      assert.equal(error.name, 'ConfigError')
      assert.ok(error.message.startsWith(`MODEL_REPOSITORY: cannot load ${repo.modelPath('unloadable')}: `), error.message)
      assert.match(error.message, /NoSuchOperator/)
      return true
    })
  })

  test('the process exits 78 with one line naming the file; with skip it serves and lists the failure', async (t) => {
    const repo = await makeRepository(['classifier', 'unloadable'])
    t.after(repo.cleanup)
    const failing = await GatewayProcess.start(t, { env: { MODEL_REPOSITORY: repo.dir, MODEL_LOAD_FAILURE: 'exit' } })
    const exit = await failing.waitExit(15_000)
    assert.equal(exit.code, EX_CONFIG, failing.tail())
    assert.equal(failing.stderr.length, 1, failing.tail())
    assert.ok(failing.stderr[0].includes(repo.modelPath('unloadable')), failing.stderr[0])

    const skipping = await GatewayProcess.start(t, { env: { MODEL_REPOSITORY: repo.dir, MODEL_LOAD_FAILURE: 'skip' } })
    await skipping.waitReady()
    const logged = (await skipping.waitForLog('model unloadable/1 failed to load; serving the others without it (MODEL_LOAD_FAILURE=skip)')).json
    assert.equal(logged?.level, 50, 'logged as an error')
    assert.equal((await skipping.fetch('/health/ready')).status, 200)
    const index = await (await skipping.fetch('/v2/repository/index', { method: 'POST' })).json() as Array<{ name: string, state: string }>
    assert.deepEqual(index.map((e) => [e.name, e.state]), [['classifier', 'READY'], ['classifier', 'READY'], ['unloadable', 'UNAVAILABLE']])
    assert.equal((await skipping.post('/v2/models/unloadable/infer', { inputs: [] })).status, 404)
  })

  test('with every version loaded the index lists them all READY', async (t) => {
    const { app } = await buildTestApp(t, { models: ['classifier', 'strings'] })
    const response = await app.inject({ method: 'POST', url: '/v2/repository/index', payload: { ready: true } })
    assert.deepEqual(response.json(), [
      { name: 'classifier', version: '1', state: 'READY', reason: '' },
      { name: 'classifier', version: '2', state: 'READY', reason: '' },
      { name: 'strings', version: '1', state: 'READY', reason: '' }
    ])
  })
})
