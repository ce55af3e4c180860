import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

// Whether an installed node_modules is the one package-lock.json describes: npm ci has
// been seen to print "Exit handler never called!" and exit 0 with packages missing, and
// an image built from that would fail only when it starts on a replacement machine.

interface LockEntry {
  readonly version?: string
  readonly dev?: boolean
  readonly optional?: boolean
  readonly devOptional?: boolean
  readonly link?: boolean
  readonly resolved?: string
}

interface Lockfile {
  readonly lockfileVersion?: number
  readonly packages?: Record<string, LockEntry>
}

export interface InstallOptions {
  /** Dev dependencies were left out (`npm ci --omit=dev`): they need not be there. */
  readonly omitDev: boolean
}

/**
 * What is missing or wrong in `root`/node_modules compared with `root`/package-lock.json
 * (lockfile v2 or v3): one line per package that should be installed and is not, or is
 * installed at another version. Optional packages may be absent (they are skipped on
 * platforms they do not support) but, when present, must have their locked version.
 */
export async function lockProblems (root: string, options: InstallOptions): Promise<string[]> {
  let lock: Lockfile
  try {
    lock = JSON.parse(await readFile(join(root, 'package-lock.json'), 'utf8')) as Lockfile
  } catch (error) {
    return [`package-lock.json: ${(error as Error).message}`]
  }
  if (lock.packages === undefined) return [`package-lock.json: lockfileVersion ${lock.lockfileVersion ?? '?'} has no "packages" (npm 7 or newer writes them)`]
  const problems: string[] = []
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (!path.includes('node_modules/')) continue
    if (options.omitDev && entry.dev === true) continue
    const mayBeAbsent = entry.optional === true || entry.devOptional === true
    const manifest = await readManifest(join(root, path))
    if (manifest === 'missing') {
      if (!mayBeAbsent) problems.push(`${path}: missing`)
      continue
    }
    if (typeof manifest === 'string') {
      problems.push(`${path}: package.json unreadable: ${manifest}`)
      continue
    }
    if (entry.link === true) continue
    if (entry.version !== undefined && manifest.version !== entry.version) {
      problems.push(`${path}: ${manifest.version ?? 'no version'} installed, ${entry.version} locked`)
    }
  }
  return problems
}

/**
 * Imports every production dependency named in `root`/package.json, resolved from
 * `root` as the application would. Catches a package whose directory exists but whose
 * files (or whose own dependencies) are missing. One line per failure.
 */
export async function importProblems (root: string): Promise<string[]> {
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> }
  const require = createRequire(join(root, 'package.json'))
  const problems: string[] = []
  for (const name of Object.keys(pkg.dependencies ?? {})) {
    try {
      await import(pathToFileURL(require.resolve(name)).href)
    } catch (error) {
      problems.push(`${name}: cannot be loaded: ${firstLine(error)}`)
    }
  }
  return problems
}

/**
 * Loads onnxruntime-node's native binding from `root` (the shared library for this
 * platform, linked against the system's libc and libstdc++) and, when `modelPath` is
 * given, opens a session on it. Returns the execution providers the binding lists.
 */
export async function checkOnnxruntime (root: string, modelPath?: string): Promise<{ backends: string[] }> {
  const require = createRequire(join(root, 'package.json'))
  const ort = await import(pathToFileURL(require.resolve('onnxruntime-node')).href) as typeof import('onnxruntime-node')
  const backends = ort.listSupportedBackends().map((backend) => backend.name)
  if (!backends.includes('cpu')) throw new Error(`onnxruntime-node lists no cpu backend (only ${backends.join(', ') || 'none'})`)
  if (modelPath !== undefined) {
    const session = await ort.InferenceSession.create(modelPath, { executionProviders: ['cpu'] })
    await session.release()
  }
  return { backends }
}

/** The package's manifest, `missing`, or why it cannot be read (a half-extracted package). */
async function readManifest (dir: string): Promise<{ version?: string } | string> {
  let text: string
  try {
    text = await readFile(join(dir, 'package.json'), 'utf8')
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : firstLine(error)
  }
  try {
    return JSON.parse(text) as { version?: string }
  } catch (error) {
    return firstLine(error)
  }
}

function firstLine (error: unknown): string {
  return String((error as Error)?.message ?? error).split('\n')[0]
}
