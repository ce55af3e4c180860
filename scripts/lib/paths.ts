import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

// Where things are in the repository, whether this file runs compiled (dist/scripts/lib)
// or from its TypeScript source (scripts/lib, as the tests run it).

function findRoot (from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'tsconfig.json'))) return dir
    if (dirname(dir) === dir) throw new Error(`no repository root above ${from}`)
  }
}

export const ROOT = findRoot(dirname(fileURLToPath(import.meta.url)))

/** A path inside the repository. */
export function repoPath (...parts: string[]): string {
  return join(ROOT, ...parts)
}

/** The compiled gateway entry (package.json's `bin`), as supervisors and containers run it. */
export const GATEWAY_ENTRY = repoPath('dist', 'src', 'main.js')

/** A compiled script under dist/scripts, e.g. `fleet.js`. */
export function compiledScript (name: string): string {
  return repoPath('dist', 'scripts', name)
}
