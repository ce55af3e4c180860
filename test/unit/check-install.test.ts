import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { describe, test } from 'node:test'
import { checkOnnxruntime, importProblems, lockProblems } from '../../scripts/lib/check-install.js'
import { ROOT } from '../../scripts/lib/paths.js'
import { writeClassifier } from '../../scripts/models/catalog.js'

// The images' guard against an install that npm reported as done but left incomplete
// ("Exit handler never called!", exit 0): checked against package-lock.json, by
// loading every production dependency, and by loading onnxruntime's native binding.

const LOCK = {
  name: 'app',
  lockfileVersion: 3,
  packages: {
    '': { name: 'app', dependencies: { a: '^1.0.0', b: '^2.0.0' }, devDependencies: { tool: '^1.0.0' } },
    'node_modules/a': { version: '1.0.0' },
    'node_modules/b': { version: '2.0.0' },
    'node_modules/b/node_modules/c': { version: '3.0.0' },
    'node_modules/@scope/d': { version: '4.0.0' },
    'node_modules/tool': { version: '1.0.0', dev: true },
    'node_modules/fsevents': { version: '2.3.3', optional: true, os: ['darwin'] }
  }
}

const COMPLETE: Record<string, string> = {
  'package.json': JSON.stringify({ name: 'app', type: 'module', dependencies: { a: '^1.0.0', b: '^2.0.0' }, devDependencies: { tool: '^1.0.0' } }),
  'package-lock.json': JSON.stringify(LOCK),
  'node_modules/a/package.json': '{"name":"a","version":"1.0.0","main":"index.js"}',
  'node_modules/a/index.js': 'module.exports = require("@scope/d")',
  'node_modules/b/package.json': '{"name":"b","version":"2.0.0"}',
  'node_modules/b/index.js': 'module.exports = require("c")',
  'node_modules/b/node_modules/c/package.json': '{"name":"c","version":"3.0.0"}',
  'node_modules/b/node_modules/c/index.js': 'module.exports = 3',
  'node_modules/@scope/d/package.json': '{"name":"@scope/d","version":"4.0.0","exports":{".":{"require":"./d.cjs"}}}',
  'node_modules/@scope/d/d.cjs': 'module.exports = 4'
}

async function install (t: { after: (fn: () => Promise<void>) => void }, files: Record<string, string | undefined>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'spotgate-check-install-'))
  t.after(() => rm(root, { recursive: true, force: true }))
  for (const [path, content] of Object.entries(files)) {
    if (content === undefined) continue
    await mkdir(dirname(join(root, path)), { recursive: true })
    await writeFile(join(root, path), content)
  }
  return root
}

describe('check-install', () => {
  test('a complete production install passes, without dev or unsupported optional packages', async (t) => {
    const root = await install(t, COMPLETE)
    assert.deepEqual(await lockProblems(root, { omitDev: true }), [])
    assert.deepEqual(await importProblems(root), [])
  })

  test('names each locked package that is missing, nested and scoped ones included', async (t) => {
    const root = await install(t, { ...COMPLETE, 'node_modules/b/node_modules/c/package.json': undefined, 'node_modules/@scope/d/package.json': undefined })
    assert.deepEqual((await lockProblems(root, { omitDev: true })).sort(), ['node_modules/@scope/d: missing', 'node_modules/b/node_modules/c: missing'])
  })

  test('dev packages are required unless they were omitted', async (t) => {
    const root = await install(t, COMPLETE)
    assert.deepEqual(await lockProblems(root, { omitDev: false }), ['node_modules/tool: missing'])
  })

  test('a package at another version than locked, or with an unreadable manifest, is a problem', async (t) => {
    const root = await install(t, {
      ...COMPLETE,
      'node_modules/a/package.json': '{"name":"a","version":"1.0.1"}',
      'node_modules/b/package.json': '{"name":"b","vers',
      'node_modules/fsevents/package.json': '{"name":"fsevents","version":"2.0.0"}'
    })
    const problems = await lockProblems(root, { omitDev: true })
    assert.equal(problems.length, 3, problems.join('\n'))
    assert.ok(problems.includes('node_modules/a: 1.0.1 installed, 1.0.0 locked'))
    assert.ok(problems.includes('node_modules/fsevents: 2.0.0 installed, 2.3.3 locked'), 'an optional package that is there must match')
    assert.ok(problems.some((p) => /^node_modules\/b: package\.json unreadable: /.test(p)))
  })

  test('a missing or pre-npm-7 lock file is a problem, not a pass', async (t) => {
    const none = await install(t, { ...COMPLETE, 'package-lock.json': undefined })
    assert.match((await lockProblems(none, { omitDev: true }))[0], /^package-lock\.json: /)
    const old = await install(t, { ...COMPLETE, 'package-lock.json': '{"lockfileVersion":1,"dependencies":{}}' })
    assert.match((await lockProblems(old, { omitDev: true }))[0], /lockfileVersion 1 has no "packages"/)
  })

  test('a dependency whose directory is there but whose files are not fails to load', async (t) => {
    const root = await install(t, { ...COMPLETE, 'node_modules/b/node_modules/c/index.js': undefined, 'node_modules/a/index.js': 'throw new Error("half extracted\\nstack")' })
    assert.deepEqual(await lockProblems(root, { omitDev: true }), [], 'the manifests alone look complete')
    const problems = await importProblems(root)
    assert.equal(problems.length, 2, problems.join('\n'))
    assert.match(problems[0], /^a: cannot be loaded: half extracted$/)
    assert.match(problems[1], /^b: cannot be loaded: Cannot find module 'c'/)
  })

  test('this repository\'s own install passes, and onnxruntime\'s native binding loads and opens a model', async (t) => {
    assert.deepEqual(await lockProblems(ROOT, { omitDev: false }), [])
    const dir = await mkdtemp(join(tmpdir(), 'spotgate-check-install-model-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    const model = await writeClassifier(dir, 1)
    const { backends } = await checkOnnxruntime(ROOT, model)
    assert.ok(backends.includes('cpu'), backends.join(', '))
    await assert.rejects(checkOnnxruntime(ROOT, join(dir, 'absent.onnx')))
  })
})
