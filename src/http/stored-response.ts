import type { InferenceResponse } from '../inference/signature.js'
import type { StoredResponse } from '../journal/journal.js'
import { encodeResponseBody } from './v2-json.js'

const JSON_TYPE = 'application/json; charset=utf-8'

/** The bytes of an answer, as the journal keeps them for replays and polls. */
export interface ResponseEncoder {
  success (response: InferenceResponse): StoredResponse
  failure (statusCode: number, message: string): StoredResponse
}

export const jsonResponses: ResponseEncoder = {
  success: (response) => ({ statusCode: 200, contentType: JSON_TYPE, body: Buffer.from(JSON.stringify(encodeResponseBody(response))) }),
  failure: (statusCode, message) => ({ statusCode, contentType: JSON_TYPE, body: Buffer.from(JSON.stringify({ error: message })) })
}
