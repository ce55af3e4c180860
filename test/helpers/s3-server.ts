import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import S3rver from 's3rver'
import { freePort } from './ports.js'

/** A real S3 HTTP API (s3rver, over a scratch directory) on loopback, with one bucket. */
export async function startS3 (after: (fn: () => Promise<void>) => void, bucket = 'spotgate-batches'): Promise<{ endpoint: string, bucket: string }> {
  const directory = await mkdtemp(join(tmpdir(), 'spotgate-s3-'))
  const port = await freePort()
  const server = new S3rver({ address: '127.0.0.1', port, silent: true, directory, configureBuckets: [{ name: bucket }] })
  await server.run()
  after(async () => {
    await server.close()
    await rm(directory, { recursive: true, force: true })
  })
  return { endpoint: `http://127.0.0.1:${port}`, bucket }
}

/** Credentials s3rver accepts (it checks signatures against these fixed ones). */
export const S3RVER_ENV = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' }
