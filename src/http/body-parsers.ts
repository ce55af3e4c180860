import type { FastifyInstance } from 'fastify'
import { UnsupportedMediaType } from '../errors.js'
import { BinaryBody, HEADER_LENGTH, splitBinaryBody } from './v2-binary.js'

/**
 * JSON bodies, and binary ones (the v2 binary tensor data extension) recognised by
 * their Inference-Header-Content-Length header, whatever their content type says.
 * Nothing else is accepted (415).
 */
export function installBodyParsers (app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error')
  const parseJsonText = (text: string): unknown => {
    let result: unknown
    let failure: Error | undefined
    parseJson(undefined as never, text, (error, value) => { failure = error ?? undefined; result = value })
    if (failure !== undefined) throw failure
    return result
  }
  app.removeAllContentTypeParsers()
  app.addContentTypeParser(['application/json', 'application/octet-stream'], { parseAs: 'buffer' }, (request, body, done) => {
    const headerLength = request.headers[HEADER_LENGTH]
    if (headerLength !== undefined) {
      try {
        done(null, splitBinaryBody(body as Buffer, headerLength, parseJsonText))
      } catch (error) {
        done(error as Error, undefined)
      }
      return
    }
    if ((request.headers['content-type'] ?? '').startsWith('application/octet-stream')) {
      done(new UnsupportedMediaType('application/octet-stream needs the Inference-Header-Content-Length header (binary tensor data extension)'), undefined)
      return
    }
    parseJson(request, (body as Buffer).toString('utf8'), done)
  })
}

export { BinaryBody }
