/** A problem with configuration or the model repository: start-up stops with exit code 78 (EX_CONFIG). */
export class ConfigError extends Error {
  override readonly name = 'ConfigError'
}

export const EX_CONFIG = 78
