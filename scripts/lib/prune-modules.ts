import { lstat, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'

// What a production node_modules carries that an image never uses: native binaries
// built for other platforms (onnxruntime-node ships Windows, macOS and Linux arm64
// builds next to the linux/x64 one, about 250 MB) and files only a compiler, an
// editor or a package's own tests read. Everything under the target platform's
// directory is kept, so the CUDA provider libraries that onnxruntime-node's install
// script adds to bin/napi-v*/linux/x64 stay.

export interface PruneOptions {
  /** `process.platform` of the image, e.g. `linux`. */
  readonly platform: string
  /** `process.arch` of the image, e.g. `x64`. */
  readonly arch: string
}

export interface PruneTarget {
  readonly path: string
  readonly why: 'other platform' | 'build only'
  readonly bytes: number
}

/** Directories at a package's root that only its authors use. */
const BUILD_ONLY_DIRS = new Set(['test', 'tests', '__tests__', 'benchmark', 'benchmarks', 'bench', 'example', 'examples', 'docs', 'doc', 'coverage', '.github', '.vscode', '.nyc_output'])

/**
 * Files nothing reads at run time: TypeScript sources and declarations (Node will not
 * strip types under node_modules), source maps (no --enable-source-maps) and Markdown.
 */
const BUILD_ONLY_FILE = /\.(ts|mts|cts|map|md|markdown)$/i
/** Kept whatever their extension: what a package's licence asks to ship with it. */
const LEGAL_FILE = /^(licen[cs]e|notice|copying|authors|patents)(\.|$|-)/i

/**
 * Every path `pruneModules` would remove under `nodeModules`: other platforms' native
 * builds (`bin/napi-v*\/<platform>/<arch>`), build-only directories at package roots
 * and build-only files anywhere in a package.
 * Throws when a package ships native builds but none for the target: pruning would
 * leave it with nothing to load.
 */
export async function pruneTargets (nodeModules: string, options: PruneOptions): Promise<PruneTarget[]> {
  const targets: PruneTarget[] = []
  for (const packageDir of await packageDirs(nodeModules)) {
    await nativeTargets(packageDir, options, targets)
    await buildOnlyTargets(packageDir, packageDir, targets)
  }
  return targets
}

/** Removes what `pruneTargets` lists; returns it. */
export async function pruneModules (nodeModules: string, options: PruneOptions): Promise<PruneTarget[]> {
  const targets = await pruneTargets(nodeModules, options)
  for (const target of targets) await rm(target.path, { recursive: true, force: true })
  return targets
}

/** Package directories under a node_modules (scoped ones included, nested node_modules too). */
async function packageDirs (nodeModules: string): Promise<string[]> {
  const found: string[] = []
  for (const entry of await entries(nodeModules)) {
    if (!entry.isDirectory() || entry.name.startsWith('.')) continue
    const dir = join(nodeModules, entry.name)
    if (entry.name.startsWith('@')) {
      for (const scoped of await entries(dir)) {
        if (scoped.isDirectory()) found.push(join(dir, scoped.name))
      }
    } else {
      found.push(dir)
    }
  }
  const nested: string[] = []
  for (const dir of found) nested.push(...await packageDirs(join(dir, 'node_modules')))
  return [...found, ...nested]
}

/** `bin/napi-v<N>/<platform>/<arch>`: the layout of onnxruntime-node and other prebuilt addons. */
async function nativeTargets (packageDir: string, options: PruneOptions, targets: PruneTarget[]): Promise<void> {
  const bin = join(packageDir, 'bin')
  for (const napi of await entries(bin)) {
    if (!napi.isDirectory() || !/^napi-v\d+$/.test(napi.name)) continue
    const napiDir = join(bin, napi.name)
    const platforms = (await entries(napiDir)).filter((e) => e.isDirectory())
    const platform = platforms.find((e) => e.name === options.platform)
    const arches = platform === undefined ? [] : (await entries(join(napiDir, platform.name))).filter((e) => e.isDirectory())
    if (!arches.some((e) => e.name === options.arch)) {
      throw new Error(`${napiDir} has no ${options.platform}/${options.arch} build (only ${platforms.map((p) => p.name).join(', ') || 'none'}); refusing to prune it`)
    }
    for (const other of platforms.filter((e) => e.name !== options.platform)) {
      const path = join(napiDir, other.name)
      targets.push({ path, why: 'other platform', bytes: await sizeOf(path) })
    }
    for (const other of arches.filter((e) => e.name !== options.arch)) {
      const path = join(napiDir, options.platform, other.name)
      targets.push({ path, why: 'other platform', bytes: await sizeOf(path) })
    }
  }
}

async function buildOnlyTargets (packageDir: string, dir: string, targets: PruneTarget[]): Promise<void> {
  for (const entry of await entries(dir)) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) {
      // A nested node_modules holds packages of its own: packageDirs visits them.
      if (entry.name === 'node_modules') continue
      if (dir === packageDir && BUILD_ONLY_DIRS.has(entry.name)) {
        targets.push({ path, why: 'build only', bytes: await sizeOf(path) })
        continue
      }
      // The native builds' own directory is judged by platform, never by file name.
      if (dir === packageDir && entry.name === 'bin') continue
      await buildOnlyTargets(packageDir, path, targets)
    } else if (entry.isFile() && BUILD_ONLY_FILE.test(entry.name) && !LEGAL_FILE.test(entry.name)) {
      targets.push({ path, why: 'build only', bytes: (await lstat(path)).size })
    }
  }
}

async function entries (dir: string): Promise<import('node:fs').Dirent[]> {
  try {
    return await readdir(dir, { withFileTypes: true })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return []
    throw error
  }
}

async function sizeOf (path: string): Promise<number> {
  const stat = await lstat(path)
  if (!stat.isDirectory()) return stat.size
  let total = 0
  for (const entry of await entries(path)) total += await sizeOf(join(path, entry.name))
  return total
}
