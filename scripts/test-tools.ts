// Runs before `npm test`: the suite starts real redis-server and HAProxy processes and
// checks the alerting rules with promtool. Finds each tool; when some are missing and
// this process is root on a machine with apt, installs them; otherwise stops with one
// line naming the command that would.
import { spawnSync } from 'node:child_process'
import { findBinary } from './lib/process.js'

/** Tool → the Debian package that provides it. */
const TOOLS: ReadonlyArray<readonly [tool: string, debianPackage: string]> = [
  ['redis-server', 'redis-server'],
  ['redis-cli', 'redis-tools'],
  ['haproxy', 'haproxy'],
  ['promtool', 'prometheus']
]

function missingPackages (): string[] {
  return [...new Set(TOOLS.filter(([tool]) => findBinary(tool) === undefined).map(([, debianPackage]) => debianPackage))]
}

function run (command: string, args: readonly string[]): boolean {
  const result = spawnSync(command, args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
  return result.status === 0
}

const missing = missingPackages()
if (missing.length > 0) {
  const command = `apt-get install -y --no-install-recommends ${missing.join(' ')}`
  const canInstall = process.getuid?.() === 0 && findBinary('apt-get') !== undefined
  if (!canInstall) {
    process.stderr.write(`The tests need ${missing.join(', ')}; install with: sudo ${command}\n`)
    process.exit(1)
  }
  process.stderr.write(`Installing what the tests need: ${missing.join(' ')}\n`)
  if (!run('apt-get', ['update', '-qq']) || !run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing]) || missingPackages().length > 0) {
    process.stderr.write(`Could not install ${missing.join(', ')}; install by hand with: ${command}\n`)
    process.exit(1)
  }
}
