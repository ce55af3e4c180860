import { CONFIG_VARIABLES } from '../../src/config.js'

/**
 * Set by `node --test` for its own children (a gateway that inherits it reports to the
 * runner), and Node's own options, which would change what a run measures.
 */
const NOT_INHERITED = new Set([...CONFIG_VARIABLES, 'NODE_TEST_CONTEXT', 'NODE_OPTIONS'])

/**
 * The environment for a gateway child process: this process's environment without any
 * variable the gateway reads (so a developer's shell cannot change what a test, the
 * bench or the chaos harness runs), then `settings`.
 */
export function gatewayEnvironment (settings: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !NOT_INHERITED.has(key)) env[key] = value
  }
  return Object.assign(env, settings)
}
