#!/usr/bin/env node
// npm run chaos -- [--duration-s 30] [--instances 3] [--concurrency 16] [--seed N] [--balancer haproxy|client] [--redis single|cluster|sentinel] [--json out.json]
// A self-contained fleet on this machine (its own redis-server, gateways and HAProxy on
// 127.0.0.1), load with idempotency keys and retries, SIGKILLs and SIGTERMs under load;
// with --redis cluster or sentinel, a Redis primary SIGKILLed mid-run as well.
// Exit 1 when any request was lost or answered wrongly; 130 when interrupted.
import { writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { runChaos } from './chaos/run.js'
import { REDIS_MODES, type RedisMode } from './lib/redis-deployment.js'
import { formatReport, passed } from './chaos/report.js'

const USAGE = 'usage: chaos [--duration-s 30] [--instances 3] [--concurrency 16] [--seed N] [--interval-s 3.5] [--min-events N] [--settle-s 20] [--spin-share 0.3] [--batch-lines 800] [--lease-ttl-ms 1500] [--balancer haproxy|client] [--redis single|cluster|sentinel] [--min-replicas N] [--redis-kill-at-s S] [--redis-link-loss-ms 300] [--async-share 0.2] [--log-dir DIR] [--json out.json] [--quiet]'

function number (name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined
  const parsed = Number(value)
  if (!Number.isFinite(parsed) || parsed < min || parsed > max) {
    process.stderr.write(`chaos: --${name} must be a number from ${min} to ${max}\n${USAGE}\n`)
    process.exit(2)
  }
  return parsed
}

let args: ReturnType<typeof parse>
function parse () {
  return parseArgs({
    options: {
      'duration-s': { type: 'string' },
      instances: { type: 'string' },
      concurrency: { type: 'string' },
      seed: { type: 'string' },
      'interval-s': { type: 'string' },
      'min-events': { type: 'string' },
      'settle-s': { type: 'string' },
      'spin-share': { type: 'string' },
      'batch-lines': { type: 'string' },
      'lease-ttl-ms': { type: 'string' },
      balancer: { type: 'string' },
      redis: { type: 'string' },
      'min-replicas': { type: 'string' },
      'redis-kill-at-s': { type: 'string' },
      'redis-link-loss-ms': { type: 'string' },
      'async-share': { type: 'string' },
      'log-dir': { type: 'string' },
      json: { type: 'string' },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false }
    }
  })
}
try {
  args = parse()
} catch (error) {
  process.stderr.write(`chaos: ${(error as Error).message}\n${USAGE}\n`)
  process.exit(2)
}
if (args.values.help) {
  process.stdout.write(`${USAGE}\n`)
  process.exit(0)
}
const v = args.values
if (v.balancer !== undefined && v.balancer !== 'haproxy' && v.balancer !== 'client') {
  process.stderr.write(`chaos: --balancer must be haproxy or client\n${USAGE}\n`)
  process.exit(2)
}
if (v.redis !== undefined && !(REDIS_MODES as readonly string[]).includes(v.redis)) {
  process.stderr.write(`chaos: --redis must be one of ${REDIS_MODES.join(', ')}\n${USAGE}\n`)
  process.exit(2)
}
const options = Object.fromEntries(Object.entries({
  durationS: number('duration-s', v['duration-s'], 1, 3600),
  instances: number('instances', v.instances, 2, 32),
  concurrency: number('concurrency', v.concurrency, 1, 1024),
  seed: number('seed', v.seed, 0, 2 ** 31 - 1),
  intervalS: number('interval-s', v['interval-s'], 0.5, 3600),
  minEvents: number('min-events', v['min-events'], 0, 1000),
  settleS: number('settle-s', v['settle-s'], 1, 600),
  spinShare: number('spin-share', v['spin-share'], 0, 1),
  batchLines: number('batch-lines', v['batch-lines'], 0, 1_000_000),
  leaseTtlMs: number('lease-ttl-ms', v['lease-ttl-ms'], 500, 60_000),
  balancer: v.balancer as 'haproxy' | 'client' | undefined,
  redis: v.redis as RedisMode | undefined,
  minReplicas: number('min-replicas', v['min-replicas'], 0, 2),
  redisKillAtS: number('redis-kill-at-s', v['redis-kill-at-s'], 0, 3600),
  redisLinkLossMs: number('redis-link-loss-ms', v['redis-link-loss-ms'], 0, 5000),
  asyncShare: number('async-share', v['async-share'], 0, 1),
  logDir: v['log-dir']
}).filter(([, value]) => value !== undefined))

// The first signal stops the run cleanly (its report is still printed); a second exits at
// once, and the run's exit hook SIGKILLs what it started.
const interrupt = new AbortController()
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupt.signal.aborted) process.exit(130)
    process.stderr.write(`chaos: ${signal}: stopping the run and everything it started (again to exit at once)\n`)
    interrupt.abort()
  })
}

const started = Date.now()
const progress = v.quiet ? undefined : (line: string) => process.stderr.write(`chaos ${line}\n`)
try {
  const report = await runChaos({ ...options, signal: interrupt.signal, ...(progress !== undefined && { progress }) })
  process.stdout.write(`${formatReport(report)}\n`)
  if (v.json !== undefined) await writeFile(v.json, `${JSON.stringify(report, null, 2)}\n`)
  process.exitCode = report.interrupted ? 130 : passed(report) ? 0 : 1
} catch (error) {
  process.stderr.write(`chaos: ${interrupt.signal.aborted ? 'interrupted' : 'failed'} after ${((Date.now() - started) / 1000).toFixed(1)} s: ${(error as Error).stack ?? String(error)}\n`)
  process.exitCode = interrupt.signal.aborted ? 130 : 1
}
