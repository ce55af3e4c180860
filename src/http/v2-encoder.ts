import type { InferenceRequest, InferenceResponse } from '../inference/signature.js'
import type { StoredResponse } from '../journal/journal.js'
import { encodeBinaryResponse } from './v2-binary.js'
import { encodeResponseJson } from './v2-response.js'

const JSON_TYPE = 'application/json; charset=utf-8'

/** The bytes of an answer, as the journal keeps them for replays and polls. */
export interface ResponseEncoder {
  success (response: InferenceResponse, request: InferenceRequest): StoredResponse
  failure (statusCode: number, message: string): StoredResponse
}

/** KServe v2 answers: JSON, or the binary tensor data extension when the request asked for it. */
export const v2Responses: ResponseEncoder = {
  success: (response, request) => {
    if (request.binaryOutputs !== undefined) return encodeBinaryResponse(response, request.binaryOutputs)
    return { statusCode: 200, contentType: JSON_TYPE, body: encodeResponseJson(response) }
  },
  failure: (statusCode, message) => ({ statusCode, contentType: JSON_TYPE, body: Buffer.from(JSON.stringify({ error: message })) })
}
