import { constants } from 'node:fs'
import { access, stat } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ConfigError } from '../../config-error.js'
import { DirectoryStorage } from './directory.js'
import type { BatchStorage } from './storage.js'

/**
 * BATCH_STORAGE_URL: `file:///abs/dir`, `file://./relative/dir` (against the working
 * directory), or `s3://bucket[/prefix]` with S3_ENDPOINT for an S3-compatible store.
 * The AWS SDK is loaded only for S3: it adds a fifth to every gateway's start-up otherwise.
 */
export async function createStorage (url: string, s3Endpoint?: string, warn: (message: string) => void = () => {}): Promise<BatchStorage> {
  if (url.startsWith('file://')) {
    const rest = url.slice('file://'.length)
    const path = rest.startsWith('/') ? fileURLToPath(`file://${rest}`) : resolve(decodeURIComponent(rest))
    await checkDirectory(path, warn)
    return new DirectoryStorage(path)
  }
  const match = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url)
  if (match === null) throw new ConfigError('BATCH_STORAGE_URL: use file:///path or s3://bucket/prefix')
  const prefix = (match[2] ?? '').replace(/^\/+|\/+$/g, '')
  if (prefix !== '' && !/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(prefix)) throw new ConfigError('BATCH_STORAGE_URL: the S3 prefix may hold only A-Z a-z 0-9 . _ - and /')
  const { S3Storage } = await import('./s3.js')
  return new S3Storage({ bucket: match[1], prefix, ...(s3Endpoint !== undefined && { endpoint: s3Endpoint }) })
}

/**
 * The storage directory, or the nearest folder above it that exists (it is created at the
 * first upload), must be a directory: a file there is a configuration error, caught at
 * start-up rather than as a 500 on the first upload. One this process cannot write to is
 * only warned about: a gateway that runs no batches (a read-only root file system, say)
 * serves online requests all the same.
 */
async function checkDirectory (path: string, warn: (message: string) => void): Promise<void> {
  let at = path
  for (;;) {
    const found = await stat(at).catch((error: NodeJS.ErrnoException) => {
      // ENOTDIR: a folder above is a file, which the walk up reports.
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined
      throw new ConfigError(`BATCH_STORAGE_URL: ${at} cannot be read (${error.code ?? error.message})`)
    })
    if (found !== undefined) {
      if (!found.isDirectory()) throw new ConfigError(`BATCH_STORAGE_URL: ${at} is not a directory${at === path ? '' : ` (so ${path} cannot be made)`}`)
      await access(at, constants.W_OK | constants.X_OK).catch(() => {
        warn(`BATCH_STORAGE_URL: ${at} is not writable by this process${at === path ? '' : ` (so ${path} cannot be made)`}: uploads to /v1/files will fail until it is`)
      })
      return
    }
    const parent = dirname(at)
    if (parent === at) return
    at = parent
  }
}
