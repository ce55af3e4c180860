/**
 * The JSON schemas of spotgate (query strings, path parameters, a model's config.json)
 * carry, beside the keywords that validate, an `errorMessage`: the sentence a value the
 * schema refuses is answered with. It is an annotation (ajv-errors' name for the same
 * idea, without the plugin); `refusalMessage` reads it from the refused subschema,
 * which ajv hands over when compiled with `verbose: true`.
 */
export const ERROR_MESSAGE_KEYWORD = 'errorMessage'

/** The part of an ajv error object read here. */
export interface SchemaError {
  readonly keyword: string
  readonly instancePath: string
  readonly params: Record<string, unknown>
  readonly message?: string
  /** The subschema holding the failed keyword (with `verbose: true`). */
  readonly parentSchema?: unknown
}

/** The `errorMessage` of the subschema that refused the value, if it has one. */
export function refusalMessage (error: SchemaError): string | undefined {
  const schema = error.parentSchema
  if (typeof schema !== 'object' || schema === null) return undefined
  const message = (schema as Record<string, unknown>)[ERROR_MESSAGE_KEYWORD]
  return typeof message === 'string' ? message : undefined
}
