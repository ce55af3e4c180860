// Usage: node dist/scripts/fake-metadata.js [--host 0.0.0.0] [--port 1338]
// A fake EC2 instance metadata service (IMDSv2) for several gateways, so a spot
// interruption can be triggered by hand (Docker Compose runs it as `fake-metadata`):
//   AWS_METADATA_URL=http://<this>:1338/<instance>    per gateway
//   curl -X POST   http://<this>:1338/_trigger/<instance>   a two-minute spot notice
//   curl -X DELETE http://<this>:1338/_trigger/<instance>   withdraw it
//   curl           http://<this>:1338/_status
// Only for demos and tests: real instances read the real IMDS (leave AWS_METADATA_URL unset).
import { parseArgs } from 'node:util'
import { FakeImds } from './lib/fake-imds.js'

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: process.env.HOST ?? '0.0.0.0' },
    port: { type: 'string', default: process.env.PORT ?? '1338' }
  }
})

const port = Number(values.port)
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`fake-metadata: --port: not a port: ${values.port}`)
  process.exit(2)
}

const imds = await new FakeImds((line) => console.log(`fake-metadata: ${line}`)).start(port, values.host)
console.log(`fake-metadata: IMDSv2 on http://${values.host}:${imds.port}/<instance>/latest/...; POST /_trigger/<instance> to preempt`)

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => { void imds.close().then(() => process.exit(0)) })
}
