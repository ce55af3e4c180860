import createError from '@fastify/error'

// Every error the API can answer with, defined once with its status code.
// Messages are complete sentences for the client; `%s` is filled by the thrower.
export const InvalidRequest = createError('SPOTGATE_INVALID_REQUEST', '%s', 400)
export const ModelNotFound = createError('SPOTGATE_MODEL_NOT_FOUND', '%s', 404)
export const RequestNotFound = createError('SPOTGATE_REQUEST_NOT_FOUND', '%s', 404)
export const ObjectNotFound = createError('SPOTGATE_OBJECT_NOT_FOUND', '%s', 404)
export const Conflict = createError('SPOTGATE_CONFLICT', '%s', 409)
export const PayloadTooLarge = createError('SPOTGATE_PAYLOAD_TOO_LARGE', '%s', 413)
export const UnsupportedMediaType = createError('SPOTGATE_UNSUPPORTED_MEDIA_TYPE', '%s', 415)
export const IdempotencyKeyReused = createError('SPOTGATE_IDEMPOTENCY_KEY_REUSED', '%s', 422)
export const QueueFull = createError('SPOTGATE_QUEUE_FULL', '%s', 429)
export const Unavailable = createError('SPOTGATE_UNAVAILABLE', '%s', 503)

/** Seconds a client should wait before retrying a 429 or 503. */
export const RETRY_AFTER_SECONDS = 1
