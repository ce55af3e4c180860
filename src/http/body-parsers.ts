import type { FastifyInstance } from 'fastify'
import { UnsupportedMediaType } from '../errors.js'
import { parseJsonBytes } from './json-body.js'
import { HEADER_LENGTH, splitBinaryBody } from './v2-binary.js'

/**
 * JSON bodies, and binary ones (the v2 binary tensor data extension) recognised by
 * their Inference-Header-Content-Length header, whatever their content type says.
 * Nothing else is accepted (415).
 */
export function installBodyParsers (app: FastifyInstance): void {
  app.removeAllContentTypeParsers()
  app.addContentTypeParser(['application/json', 'application/octet-stream'], { parseAs: 'buffer' }, (request, body, done) => {
    const headerLength = request.headers[HEADER_LENGTH]
    if (headerLength !== undefined) {
      try {
        done(null, splitBinaryBody(body as Buffer, headerLength))
      } catch (error) {
        done(error as Error, undefined)
      }
      return
    }
    // Routes whose body is optional take an empty one whatever its content type says.
    if ((body as Buffer).length === 0 && request.routeOptions.config?.emptyBodyAllowed === true) {
      done(null, undefined)
      return
    }
    if ((request.headers['content-type'] ?? '').startsWith('application/octet-stream')) {
      done(new UnsupportedMediaType('application/octet-stream needs the Inference-Header-Content-Length header (binary tensor data extension)'), undefined)
      return
    }
    try {
      done(null, parseJsonBytes(body as Buffer, 'the JSON body'))
    } catch (error) {
      done(error as Error, undefined)
    }
  })
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route's body is optional: an empty one parses as undefined rather than failing. */
    emptyBodyAllowed?: boolean
  }
}
