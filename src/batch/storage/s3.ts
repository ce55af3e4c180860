import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, NoSuchKey, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import type { Readable } from 'node:stream'
import { checkName, StorageError, type BatchStorage, type StoredObject } from './storage.js'

export interface S3StorageOptions {
  readonly bucket: string
  /** Prepended to every name, without a leading or trailing slash ('' for the bucket's root). */
  readonly prefix: string
  /** An S3-compatible server (MinIO, Ceph, R2...): addressed path-style. Unset: AWS. */
  readonly endpoint?: string
}

/**
 * An S3 bucket (or an S3-compatible store at S3_ENDPOINT). A PUT makes an object visible
 * whole or not at all, and S3 is strongly consistent for reads after writes, so the
 * directory backend's temporary-name dance is not needed. Credentials and the region come
 * from the standard AWS chain (environment, shared files, instance or pod roles).
 */
export class S3Storage implements BatchStorage {
  readonly kind = 's3'
  private readonly client: S3Client

  constructor (private readonly options: S3StorageOptions) {
    this.client = new S3Client({
      ...(options.endpoint !== undefined && { endpoint: options.endpoint, forcePathStyle: true }),
      // The SDK insists on a region even for S3-compatible stores, which ignore it.
      region: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1'
    })
  }

  private key (name: string): string {
    checkName(name)
    return this.options.prefix === '' ? name : `${this.options.prefix}/${name}`
  }

  async put (name: string, data: Buffer): Promise<void> {
    await this.client.send(new PutObjectCommand({ Bucket: this.options.bucket, Key: this.key(name), Body: data, ContentLength: data.length }))
  }

  async get (name: string): Promise<Buffer | undefined> {
    try {
      const reply = await this.client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key: this.key(name) }))
      return Buffer.from(await (reply.Body as { transformToByteArray: () => Promise<Uint8Array> }).transformToByteArray())
    } catch (error) {
      if (isNoSuchKey(error)) return undefined
      throw error
    }
  }

  async read (name: string): Promise<StoredObject | undefined> {
    try {
      const reply = await this.client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key: this.key(name) }))
      if (reply.ContentLength === undefined) {
        (reply.Body as Readable | undefined)?.destroy()
        throw new StorageError(`${name}: the store sent no Content-Length`)
      }
      // In Node the SDK's body is the HTTP response itself, a Readable.
      return { size: reply.ContentLength, body: reply.Body as Readable }
    } catch (error) {
      if (isNoSuchKey(error)) return undefined
      throw error
    }
  }

  async getRange (name: string, start: number, end: number): Promise<Buffer> {
    if (end <= start) return Buffer.alloc(0)
    const reply = await this.client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key: this.key(name), Range: `bytes=${start}-${end - 1}` }))
    const bytes = Buffer.from(await (reply.Body as { transformToByteArray: () => Promise<Uint8Array> }).transformToByteArray())
    if (bytes.length !== end - start) throw new StorageError(`${name}: asked for ${end - start} bytes from ${start}, got ${bytes.length}`)
    return bytes
  }

  async delete (name: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.key(name) }))
  }

  async list (prefix: string): Promise<string[]> {
    const full = this.key(prefix)
    const strip = this.options.prefix === '' ? 0 : this.options.prefix.length + 1
    const names: string[] = []
    let token: string | undefined
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: full, ...(token !== undefined && { ContinuationToken: token }) }))
      for (const object of page.Contents ?? []) if (object.Key !== undefined) names.push(object.Key.slice(strip))
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined
    } while (token !== undefined)
    return names.sort()
  }

  async close (): Promise<void> {
    this.client.destroy()
  }
}

function isNoSuchKey (error: unknown): boolean {
  return error instanceof NoSuchKey || (error as { name?: string }).name === 'NoSuchKey'
}
