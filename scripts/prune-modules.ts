// Usage: node dist/scripts/prune-modules.js [--platform linux] [--arch x64] [--dry-run] <node_modules>
// Run by the Dockerfiles after `npm ci --omit=dev`: removes other platforms' native
// builds and build-only files (scripts/lib/prune-modules.ts says which), and prints
// what it freed. Platform and architecture default to this process's own.
import { parseArgs } from 'node:util'
import { pruneModules, pruneTargets, type PruneTarget } from './lib/prune-modules.js'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    platform: { type: 'string', default: process.platform },
    arch: { type: 'string', default: process.arch },
    'dry-run': { type: 'boolean', default: false }
  }
})
if (positionals.length !== 1) {
  console.error('usage: prune-modules [--platform P] [--arch A] [--dry-run] <node_modules>')
  process.exit(2)
}

const options = { platform: values.platform, arch: values.arch }
let targets: PruneTarget[]
try {
  targets = values['dry-run'] ? await pruneTargets(positionals[0], options) : await pruneModules(positionals[0], options)
} catch (error) {
  console.error(`prune-modules: ${(error as Error).message}`)
  process.exit(1)
}

const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`
const sum = (list: readonly PruneTarget[]): number => list.reduce((total, t) => total + t.bytes, 0)
const native = targets.filter((t) => t.why === 'other platform')
const buildOnly = targets.filter((t) => t.why === 'build only')
const verb = values['dry-run'] ? 'would remove' : 'removed'
for (const target of native) console.log(`prune-modules: ${verb} ${target.path} (${mb(target.bytes)}, not ${options.platform}/${options.arch})`)
console.log(`prune-modules: ${verb} ${native.length} other-platform builds (${mb(sum(native))}) and ${buildOnly.length} build-only files and directories (${mb(sum(buildOnly))}); kept ${options.platform}/${options.arch}`)
