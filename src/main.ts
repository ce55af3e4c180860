#!/usr/bin/env node
import { loadConfig } from './config.js'
import { ConfigError, EX_CONFIG } from './config-error.js'
import { createInstance } from './instance.js'

// Process entry: configuration errors become exit code 78, then listen and start.
// What an instance is made of lives in instance.ts.

function exitOnConfigError (error: unknown): never {
  if (error instanceof ConfigError) {
    process.stderr.write(`spotgate: ${error.message}\n`)
    process.exit(EX_CONFIG)
  }
  throw error
}

/** A listen failure that the HOST or PORT setting causes, as the configuration error it is. */
function listenError (error: NodeJS.ErrnoException): ConfigError | undefined {
  const where = `${config.host}:${config.port}`
  switch (error.code) {
    case 'EADDRINUSE': return new ConfigError(`PORT: ${where} is already in use by another process`)
    case 'EACCES': return new ConfigError(`PORT: listening on ${where} needs privileges this process does not have (ports below 1024 need root or CAP_NET_BIND_SERVICE)`)
    case 'EADDRNOTAVAIL': return new ConfigError(`HOST: ${config.host} is not an address of this machine`)
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_FAIL': return new ConfigError(`HOST: ${JSON.stringify(config.host)} does not resolve to an address (${error.code})`)
    default: return undefined
  }
}

const config = (() => { try { return loadConfig() } catch (error) { return exitOnConfigError(error) } })()
const instance = await createInstance(config).catch(exitOnConfigError)

// A signal from here on drains; health and metrics answer while the models load.
instance.watchNotices()
await instance.app.listen({ host: config.host, port: config.port }).catch((error: NodeJS.ErrnoException) => exitOnConfigError(listenError(error) ?? error))
try {
  await instance.start()
} catch (error) {
  // A notice during start-up closes the models under the loader; the drain exits then.
  if (instance.state.phase === 'starting') {
    // A configuration error is the user's to fix: its one line, not a stack trace.
    instance.log.fatal(error instanceof ConfigError ? { reason: error.message } : { err: error }, 'model repository failed to load')
    exitOnConfigError(error)
  }
}
