import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The package.json this file belongs to, whether it runs compiled (dist/src) or from source (src). */
function manifestPath (): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const candidate = join(dir, 'package.json')
    if (existsSync(candidate)) return candidate
    if (dirname(dir) === dir) throw new Error('package.json not found')
  }
}

export const PACKAGE_VERSION = (JSON.parse(readFileSync(manifestPath(), 'utf8')) as { version: string }).version
