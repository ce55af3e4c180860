// The HTTP ceiling: a bare Fastify server that parses a JSON body and sends it back,
// with nothing else on the path. Listens on 127.0.0.1:$PORT.
import Fastify from 'fastify'

const app = Fastify({ logger: false })
app.post('/echo', async (request) => request.body)
app.get('/ready', async () => ({ ready: true }))
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) })
process.once('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
