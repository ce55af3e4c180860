import assert from 'node:assert/strict'
import { performance } from 'node:perf_hooks'
import { after, describe, test } from 'node:test'
import { InstanceCrashed, startInstance, type Isolation } from '../../src/inference/model-instance.js'
import type { Tensor } from '../../src/inference/signature.js'
import { makeRepository } from '../helpers/model-repo.js'
import { spinIterations } from '../helpers/requests.js'
import { allow } from '../helpers/timing.js'

// A model instance in each isolation mode: the CUDA provider falls back to the CPU where
// there is no GPU (the CUDA path is the same code in both), a run answers the same, and
// only a process can be stopped inside a run.

const repo = await makeRepository(['spin'])
after(repo.cleanup)

function spinInputs (iterations: number): Tensor[] {
  return [
    { name: 'iterations', datatype: 'INT64', shape: [1], data: BigInt64Array.of(BigInt(iterations)) },
    { name: 'x', datatype: 'FP32', shape: [1, 64], data: new Float32Array(64).fill(0.25) }
  ]
}

for (const isolation of ['process', 'thread'] as Isolation[]) {
  describe(`MODEL_ISOLATION=${isolation}`, () => {
    const init = { path: repo.modelPath('spin'), providers: ['cuda', 'cpu'] as const, cudaDeviceId: 0, intraOpThreads: 1 }

    test('cuda,cpu loads on the CPU where CUDA cannot load, saying why, and runs', async () => {
      const { instance, loaded } = await startInstance(isolation, init)
      try {
        assert.equal(loaded.provider, 'cpu')
        assert.equal(loaded.fallbacks[0]?.provider, 'cuda')
        assert.ok(loaded.fallbacks[0].reason.length > 0)
        assert.deepEqual(loaded.signature.inputs.map((s) => s.name), ['iterations', 'x'])
        const result = await instance.run(spinInputs(3), undefined, [])
        assert.deepEqual(result.outputs.map((o) => [o.name, o.datatype, o.shape]), [['y', 'FP32', [1, 64]]])
        assert.equal(result.outputs[0].data.length, 64)
      } finally {
        await instance.stop()
      }
    })

    test(isolation === 'process' ? 'stop ends a run in progress at once' : 'stop waits for the run in progress to end', async () => {
      const { instance } = await startInstance(isolation, { ...init, providers: ['cpu'] })
      const runMs = 1500
      const run = instance.run(spinInputs(spinIterations(runMs)), undefined, []).then(() => 'finished', (error: Error) => error)
      await new Promise((resolve) => setTimeout(resolve, 200))
      const started = performance.now()
      await instance.stop()
      const stopMs = performance.now() - started
      const outcome = await run
      if (isolation === 'process') {
        assert.ok(stopMs < allow(500), `a process is stopped mid-run (${stopMs.toFixed(0)} ms)`)
        assert.ok(outcome instanceof InstanceCrashed, `the run in progress is abandoned: ${String(outcome)}`)
      } else {
        assert.ok(stopMs > runMs / 2, `a thread is stopped only once its run ends (${stopMs.toFixed(0)} ms)`)
        assert.equal(outcome, 'finished')
      }
    })
  })
}
