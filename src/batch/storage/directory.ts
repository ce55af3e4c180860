import { randomBytes } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { checkName, StorageError, type BatchStorage, type StoredObject } from './storage.js'

/**
 * A directory every instance mounts (EFS, Filestore, NFS, or a local disk for one
 * instance). An object is written to a temporary name in its folder, fsynced, and
 * renamed into place, then the folder is fsynced: a crash leaves either the whole
 * object or none (and perhaps a `.tmp-` file, which no name ever refers to).
 */
export class DirectoryStorage implements BatchStorage {
  readonly kind = 'file'
  readonly root: string

  constructor (root: string) {
    this.root = resolve(root)
  }

  private path (name: string): string {
    const path = join(this.root, checkName(name))
    if (path !== this.root && !path.startsWith(this.root + sep)) throw new StorageError(`object name ${name} leaves the storage directory`)
    return path
  }

  async put (name: string, data: Buffer): Promise<void> {
    const path = this.path(name)
    const folder = dirname(path)
    await mkdir(folder, { recursive: true })
    const temporary = join(folder, `.tmp-${randomBytes(8).toString('hex')}`)
    const file = await open(temporary, 'wx', 0o600)
    try {
      await file.writeFile(data)
      await file.sync()
    } finally {
      await file.close()
    }
    try {
      await rename(temporary, path)
    } catch (error) {
      await rm(temporary, { force: true })
      throw error
    }
    await syncFolder(folder)
  }

  async get (name: string): Promise<Buffer | undefined> {
    try {
      return await readFile(this.path(name))
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw error
    }
  }

  async read (name: string): Promise<StoredObject | undefined> {
    let file
    try {
      file = await open(this.path(name), 'r')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw error
    }
    try {
      // Read from the open descriptor: an object replaced or deleted meanwhile is still read whole.
      const { size } = await file.stat()
      return { size, body: file.createReadStream({ autoClose: true }) }
    } catch (error) {
      await file.close()
      throw error
    }
  }

  async getRange (name: string, start: number, end: number): Promise<Buffer> {
    const file = await open(this.path(name), 'r')
    try {
      const buffer = Buffer.alloc(Math.max(0, end - start))
      let read = 0
      while (read < buffer.length) {
        const { bytesRead } = await file.read(buffer, read, buffer.length - read, start + read)
        if (bytesRead === 0) throw new StorageError(`${name} ends before byte ${end}`)
        read += bytesRead
      }
      return buffer
    } finally {
      await file.close()
    }
  }

  async delete (name: string): Promise<void> {
    await rm(this.path(name), { force: true })
  }

  async list (prefix: string): Promise<string[]> {
    const folder = this.path(prefix)
    const names: string[] = []
    const walk = async (dir: string): Promise<void> => {
      let entries
      try {
        entries = await readdir(dir, { withFileTypes: true })
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return
        throw error
      }
      for (const entry of entries) {
        if (entry.name.startsWith('.tmp-')) continue
        const path = join(dir, entry.name)
        if (entry.isDirectory()) await walk(path)
        else names.push(relative(this.root, path).split(sep).join('/'))
      }
    }
    await walk(folder)
    return names.sort()
  }

  async close (): Promise<void> {}
}

/** Makes a rename durable: the folder's entry is on disk, not only the file's bytes. */
async function syncFolder (folder: string): Promise<void> {
  const handle = await open(folder, 'r')
  try {
    await handle.sync()
  } catch {
    // Some file systems (and NFS clients) refuse fsync on a directory; the rename is then as durable as they make it.
  } finally {
    await handle.close()
  }
}
