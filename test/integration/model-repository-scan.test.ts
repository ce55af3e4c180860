import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rename, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { loadConfig } from '../../src/config.js'
import { scanModelRepository } from '../../src/inference/model-repository.js'
import { makeRepository } from '../helpers/model-repo.js'

const defaults = loadConfig({ PREEMPTION_SOURCES: 'none' }).modelDefaults

test('models and versions reached through symbolic links are served, as a Kubernetes ConfigMap mounts them', async (t) => {
  const source = await makeRepository(['fixed', 'tabular'])
  t.after(source.cleanup)
  const root = await mkdtemp(join(tmpdir(), 'spotgate-linked-'))
  t.after(() => rm(root, { recursive: true, force: true }))
  // fixed: the whole model folder is a link; tabular: a real folder whose version is a link.
  await symlink(join(source.dir, 'fixed'), join(root, 'fixed'))
  await mkdir(join(root, 'tabular'))
  await rename(join(source.dir, 'tabular', '1'), join(source.dir, 'tabular-v1'))
  await symlink(join(source.dir, 'tabular-v1'), join(root, 'tabular', '1'))
  await symlink(join(root, 'nowhere'), join(root, 'broken'))
  const entries = await scanModelRepository(root, defaults)
  assert.deepEqual(entries.map((e) => `${e.name}/${e.version}${e.problem === undefined ? '' : ` ${e.problem}`}`), ['fixed/1', 'tabular/1'])
})

test('with no model found, the error says which folders were skipped and why', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'spotgate-misnamed-'))
  t.after(() => rm(root, { recursive: true, force: true }))
  await mkdir(join(root, 'my model', '1'), { recursive: true })
  await mkdir(join(root, 'good', '01'), { recursive: true })
  await assert.rejects(scanModelRepository(root, defaults), (error: Error) => {
    assert.equal(error.name, 'ConfigError')
    assert.match(error.message, /^MODEL_REPOSITORY: no models found in .* \(expected <model>\/<version>\/model\.onnx\); skipped: /)
    assert.match(error.message, /"my model" \(a model name is 1-128 of/)
    assert.match(error.message, /good\/"01" \(a version is a whole number from 1, without leading zeros\)/)
    return true
  })
})
