import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { RedisClient } from '../../journal/redis/clients.js'

// The batch scripts, one file each in lua/ named `<name>-<keys>.lua`, each opening with
// a block listing its KEYS, ARGV and return values; `-- @include <name>` pulls in
// lua/includes/<name>.lua. Defined on the journal's connection as `spotgateBatch<Name>`.

const LUA_DIR = fileURLToPath(new URL('./lua/', import.meta.url))

export function commandName (name: string): string {
  return `spotgateBatch${name.split('-').map((part) => part[0].toUpperCase() + part.slice(1)).join('')}`
}

export function defineBatchScripts (client: RedisClient): void {
  for (const file of readdirSync(LUA_DIR).filter((f) => f.endsWith('.lua'))) {
    const match = /^([a-z-]+)-(\d+)\.lua$/.exec(file)
    if (match === null) throw new Error(`batch lua/${file}: script files are named <name>-<number of keys>.lua`)
    const lua = readFileSync(LUA_DIR + file, 'utf8').replace(/^-- @include ([a-z-]+)$/gm, (_line, include: string) =>
      readFileSync(`${LUA_DIR}includes/${include}.lua`, 'utf8'))
    client.defineCommand(commandName(match[1]), { lua, numberOfKeys: Number(match[2]) })
  }
}
