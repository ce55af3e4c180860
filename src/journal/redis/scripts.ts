import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

// The journal's Lua scripts, one file each in lua/, named `<name>-<keys>.lua` (or `-n`
// when the caller passes a variable number of keys). Each opens with a block listing its
// KEYS, ARGV and return values. `-- @include <name>` pulls in lua/includes/<name>.lua.
// They are read once, at start-up.

const LUA_DIR = fileURLToPath(new URL('./lua/', import.meta.url))

export interface ScriptDefinition {
  /** The ioredis command name, e.g. `spotgateAccept`. */
  readonly command: string
  /** Fixed number of keys, or undefined when the caller passes it first. */
  readonly numberOfKeys?: number
  readonly lua: string
}

function commandName (name: string): string {
  return `spotgate${name.split('-').map((part) => part[0].toUpperCase() + part.slice(1)).join('')}`
}

function expandIncludes (source: string, file: string): string {
  return source.replace(/^-- @include ([a-z-]+)$/gm, (_line, include: string) => {
    try {
      return readFileSync(`${LUA_DIR}includes/${include}.lua`, 'utf8')
    } catch {
      throw new Error(`${file}: no include named ${include}`)
    }
  })
}

let loaded: readonly ScriptDefinition[] | undefined

/** Every script in lua/, with its includes expanded. */
export function loadScripts (): readonly ScriptDefinition[] {
  return (loaded ??= readScripts())
}

function readScripts (): ScriptDefinition[] {
  return readdirSync(LUA_DIR).filter((file) => file.endsWith('.lua')).map((file) => {
    const match = /^([a-z-]+)-(\d+|n)\.lua$/.exec(file)
    if (match === null) throw new Error(`lua/${file}: script files are named <name>-<number of keys>.lua or <name>-n.lua`)
    const [, name, keys] = match
    return {
      command: commandName(name),
      ...(keys !== 'n' && { numberOfKeys: Number(keys) }),
      lua: expandIncludes(readFileSync(LUA_DIR + file, 'utf8'), file)
    }
  })
}
