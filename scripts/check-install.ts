// Usage: node dist/scripts/check-install.js [--root DIR] [--with-dev] [--model FILE.onnx]
// The Dockerfiles' guard against an incomplete install: exits 1, naming each problem,
// unless every package package-lock.json lists for production is installed at its
// locked version, every production dependency in package.json loads, and
// onnxruntime-node's native binding loads (and opens --model, when given).
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { checkOnnxruntime, importProblems, lockProblems } from './lib/check-install.js'

const { values } = parseArgs({
  options: {
    root: { type: 'string', default: '.' },
    'with-dev': { type: 'boolean', default: false },
    model: { type: 'string' }
  }
})
const root = resolve(values.root)

const problems = [
  ...await lockProblems(root, { omitDev: !values['with-dev'] }),
  ...await importProblems(root)
]
let backends: string[] = []
try {
  backends = (await checkOnnxruntime(root, values.model)).backends
} catch (error) {
  problems.push(`onnxruntime-node: ${String((error as Error).message).split('\n')[0]}`)
}

if (problems.length > 0) {
  console.error(`check-install: ${root}/node_modules is incomplete:\n  ${problems.join('\n  ')}`)
  process.exit(1)
}
console.log(`check-install: node_modules matches package-lock.json, every dependency loads, onnxruntime-node backends: ${backends.join(', ')}${values.model === undefined ? '' : `; opened ${values.model}`}`)
