import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { describe, test } from 'node:test'
import { pruneModules, pruneTargets } from '../../scripts/lib/prune-modules.js'

// The image's prune step on a node_modules laid out as npm and onnxruntime-node lay it
// out: only the target platform's native build is kept (with whatever the CUDA install
// added to it), and only files nothing loads at run time go.

async function tree (t: { after: (fn: () => Promise<void>) => void }, files: Record<string, string>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'spotgate-prune-'))
  t.after(() => rm(root, { recursive: true, force: true }))
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true })
    await writeFile(join(root, path), content)
  }
  return root
}

const ORT = 'onnxruntime-node/bin/napi-v6'
const LAYOUT: Record<string, string> = {
  'onnxruntime-node/package.json': '{"name":"onnxruntime-node","version":"1.30.0"}',
  'onnxruntime-node/dist/index.js': '',
  'onnxruntime-node/dist/index.d.ts': '',
  'onnxruntime-node/dist/index.js.map': '',
  [`${ORT}/linux/x64/onnxruntime_binding.node`]: 'x'.repeat(100),
  [`${ORT}/linux/x64/libonnxruntime.so.1`]: 'x'.repeat(100),
  [`${ORT}/linux/x64/libonnxruntime_providers_cuda.so`]: 'x'.repeat(100),
  [`${ORT}/linux/x64/libonnxruntime_providers_shared.so`]: 'x'.repeat(100),
  [`${ORT}/linux/arm64/onnxruntime_binding.node`]: 'x'.repeat(1000),
  [`${ORT}/darwin/arm64/libonnxruntime.1.dylib`]: 'x'.repeat(1000),
  [`${ORT}/win32/x64/onnxruntime.dll`]: 'x'.repeat(1000),
  'pino/package.json': '{"name":"pino"}',
  'pino/pino.js': '',
  'pino/README.md': '',
  'pino/LICENSE': '',
  'pino/test/basic.test.js': '',
  'pino/docs/api.md': '',
  'pino/lib/tools.js': '',
  // A directory named like a test folder below a package's root may be code it loads.
  'pino/lib/test/helper.js': '',
  '@fastify/error/package.json': '{"name":"@fastify/error"}',
  '@fastify/error/index.js': '',
  '@fastify/error/LICENSE.md': '',
  '@fastify/error/types/index.d.ts': '',
  '@fastify/error/benchmarks/create.js': '',
  'fastify/package.json': '{"name":"fastify"}',
  'fastify/node_modules/semver/package.json': '{"name":"semver"}',
  'fastify/node_modules/semver/index.js': '',
  'fastify/node_modules/semver/test/semver.js': '',
  '.bin/pino': ''
}

describe('prune-modules', () => {
  test('keeps only the target platform\'s native build, CUDA provider libraries included', async (t) => {
    const root = await tree(t, LAYOUT)
    const removed = await pruneModules(root, { platform: 'linux', arch: 'x64' })
    const native = removed.filter((r) => r.why === 'other platform').map((r) => relative(root, r.path)).sort()
    assert.deepEqual(native, [`${ORT}/darwin`, `${ORT}/linux/arm64`, `${ORT}/win32`])
    assert.equal(removed.filter((r) => r.why === 'other platform').reduce((sum, r) => sum + r.bytes, 0), 3000)
    for (const file of ['onnxruntime_binding.node', 'libonnxruntime.so.1', 'libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so']) {
      assert.ok(existsSync(join(root, ORT, 'linux/x64', file)), file)
    }
    for (const gone of ['darwin', 'win32', 'linux/arm64']) assert.ok(!existsSync(join(root, ORT, gone)), gone)
  })

  test('removes build-only files and package-root test, docs and benchmark folders, never licences or code', async (t) => {
    const root = await tree(t, LAYOUT)
    await pruneModules(root, { platform: 'linux', arch: 'x64' })
    const gone = ['onnxruntime-node/dist/index.d.ts', 'onnxruntime-node/dist/index.js.map', 'pino/README.md', 'pino/test', 'pino/docs',
      '@fastify/error/types/index.d.ts', '@fastify/error/benchmarks', 'fastify/node_modules/semver/test']
    for (const path of gone) assert.ok(!existsSync(join(root, path)), `${path} removed`)
    const kept = ['onnxruntime-node/dist/index.js', 'pino/pino.js', 'pino/LICENSE', 'pino/lib/tools.js', 'pino/lib/test/helper.js',
      '@fastify/error/index.js', '@fastify/error/LICENSE.md', 'fastify/node_modules/semver/index.js', '.bin/pino']
    for (const path of kept) assert.ok(existsSync(join(root, path)), `${path} kept`)
  })

  test('a dry run lists the same paths and removes nothing', async (t) => {
    const root = await tree(t, LAYOUT)
    const listed = await pruneTargets(root, { platform: 'linux', arch: 'x64' })
    assert.ok(listed.length > 0)
    for (const target of listed) assert.ok(existsSync(target.path), target.path)
  })

  test('refuses to prune a native package that has no build for the target', async (t) => {
    const root = await tree(t, LAYOUT)
    await assert.rejects(pruneTargets(root, { platform: 'linux', arch: 'riscv64' }), /no linux\/riscv64 build .*refusing/)
    await assert.rejects(pruneTargets(root, { platform: 'freebsd', arch: 'x64' }), /no freebsd\/x64 build \(only darwin, linux, win32\)/)
    assert.ok(existsSync(join(root, ORT, 'win32')), 'nothing removed')
  })

  test('an empty or absent node_modules is nothing to prune', async (t) => {
    const root = await tree(t, {})
    assert.deepEqual(await pruneTargets(root, { platform: 'linux', arch: 'x64' }), [])
    assert.deepEqual(await pruneTargets(join(root, 'absent'), { platform: 'linux', arch: 'x64' }), [])
  })
})
