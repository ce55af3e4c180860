import type { FastifyInstance } from 'fastify'
import type { ModelRegistry, ServedModel } from '../../inference/model-registry.js'
import type { TensorSpec } from '../../inference/signature.js'

interface ModelParams { model: string, version?: string }

function tensorMetadata (spec: TensorSpec) {
  return { name: spec.name, datatype: spec.datatype, shape: [...spec.shape] }
}

function metadata (models: ModelRegistry, model: ServedModel) {
  return {
    name: model.name,
    versions: models.versions(model.name),
    platform: 'onnxruntime_onnx',
    inputs: model.signature.inputs.map(tensorMetadata),
    outputs: model.signature.outputs.map(tensorMetadata)
  }
}

/** KServe v2 model metadata and model readiness. */
export async function modelRoutes (app: FastifyInstance, { models }: { models: ModelRegistry }): Promise<void> {
  app.get<{ Params: ModelParams }>('/v2/models/:model', async (request) =>
    metadata(models, models.resolve(request.params.model)))
  app.get<{ Params: ModelParams }>('/v2/models/:model/versions/:version', async (request) =>
    metadata(models, models.resolve(request.params.model, request.params.version)))

  const ready = async ({ params }: { params: ModelParams }) => {
    const model = models.resolve(params.model, params.version)
    return { name: model.name, version: model.version, ready: true }
  }
  app.get<{ Params: ModelParams }>('/v2/models/:model/ready', ready)
  app.get<{ Params: ModelParams }>('/v2/models/:model/versions/:version/ready', ready)
}
