import { InferenceFailed, QueueFull } from './errors.js'
import type { DecodedBody } from './http/v2-json.js'
import { RunError } from './inference/instance-pool.js'
import type { ServedModel } from './inference/model-registry.js'
import type { InferenceResponse } from './inference/signature.js'
import type { Metrics } from './metrics.js'

/** Runs decoded requests through a model's batcher and records what it cost. */
export class InferenceService {
  constructor (private readonly metrics: Metrics) {}

  async infer (model: ServedModel, request: DecodedBody): Promise<InferenceResponse> {
    if (!model.batcher.hasRoom) throw new QueueFull(`model '${model.name}' has ${model.batcher.depth} requests queued; retry later`)
    const labels = { model: model.name, version: model.version }
    this.metrics.inflight.inc({ model: model.name })
    try {
      const { outputs, timing } = await model.batcher.submit(request.inputs, request.outputs)
      this.metrics.queueDuration.observe(labels, timing.queueMs / 1000)
      this.metrics.inferenceDuration.observe(labels, timing.inferenceMs / 1000)
      return { model: model.name, version: model.version, ...(request.clientId !== undefined && { clientId: request.clientId }), outputs }
    } catch (error) {
      if (error instanceof RunError) throw new InferenceFailed(`inference failed: ${error.message}`)
      throw new InferenceFailed(`inference failed: ${(error as Error).message}`)
    } finally {
      this.metrics.inflight.dec({ model: model.name })
    }
  }
}
