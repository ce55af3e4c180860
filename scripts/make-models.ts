// Usage: node dist/scripts/make-models.js [dir] [--mlp]
// Writes the sample model repository into dir (default: ./models); --mlp adds the benchmark model.
// Output is byte-for-byte deterministic, so rerunning is always safe.
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'

import { writeMlp, writeSampleRepository } from './models/catalog.js'

const { values, positionals } = parseArgs({
  options: { mlp: { type: 'boolean', default: false } },
  allowPositionals: true,
})

if (positionals.length > 1) {
  console.error('usage: make-models [dir] [--mlp]')
  process.exit(2)
}

const repoDir = resolve(positionals[0] ?? 'models')
const written = await writeSampleRepository(repoDir)
if (values.mlp) written.push(await writeMlp(repoDir))
for (const file of written) console.log(`wrote ${file}`)
