import type { Logger } from 'pino'
import type { Config } from '../config.js'
import type { Metrics } from '../metrics.js'
import { EmbeddedJournal } from './embedded-journal.js'
import type { Journal } from './journal.js'
import { RedisJournal } from './redis-journal.js'

/** Redis when REDIS_URL is set; otherwise the in-process journal, with a warning that nothing can reach peers. */
export function createJournal (config: Config, deps: { metrics: Metrics, log: Logger }): Journal {
  if (config.redisUrl === undefined) {
    deps.log.warn('REDIS_URL is not set: using the in-process journal; accepted requests cannot be handed to peers and do not survive this process')
    return new EmbeddedJournal(config.instanceId, config.resultTtlSeconds)
  }
  return new RedisJournal({
    url: config.redisUrl,
    namespace: config.journalNamespace,
    instanceId: config.instanceId,
    resultTtlSeconds: config.resultTtlSeconds,
    commandTimeoutMs: config.redisCommandTimeoutMs,
    leaseTtlMs: config.leaseTtlMs,
    metrics: deps.metrics,
    log: deps.log
  })
}
