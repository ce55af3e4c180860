// Part of `npm run build`: tsc compiles only TypeScript, so the files src/ reads at run
// time (the journal's Lua scripts) are copied next to the compiled code in dist/src.
import { cp } from 'node:fs/promises'
import { repoPath } from './lib/paths.js'

await cp(repoPath('src'), repoPath('dist', 'src'), {
  recursive: true,
  filter: (source) => !source.endsWith('.ts')
})
