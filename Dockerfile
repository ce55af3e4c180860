# syntax=docker/dockerfile:1
# spotgate, CPU image: docker build -t spotgate .
# The GPU image is Dockerfile.cuda.

# Node 24 itself, copied into the runtime below: a runtime needs node, not npm (19 MB).
FROM node:24-bookworm-slim AS node

# ── build: dev dependencies, TypeScript, the sample models ─────────────────────────
FROM node:24-bookworm AS build
WORKDIR /app
# package.json's allowScripts keeps onnxruntime-node's CUDA download from running: the
# CPU build is in the npm package.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY scripts ./scripts
COPY models ./models
# Compiles src/ and scripts/, then writes models/*/<version>/model.onnx. Source maps stay
# here: nothing runs with --enable-source-maps.
RUN npm run build && find dist -name '*.map' -delete

# ── production dependencies, pruned to what linux/x64 loads ───────────────────────
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
# prune-modules drops onnxruntime-node's Windows, macOS and arm64 builds (about 250 MB)
# and build-only files. check-install fails the build when npm ci reported success but
# left node_modules incomplete (it has exited 0 after "Exit handler never called!").
COPY --from=build /app/dist/scripts ./dist/scripts
RUN node dist/scripts/prune-modules.js node_modules \
 && node dist/scripts/check-install.js

# ── runtime: Node 24, production dependencies, compiled code, models baked in ────
# Every replacement spot machine pulls this image before it can serve, so it carries
# only what runs: Debian's slim base (the one node:24-bookworm-slim is built on), the
# node binary, pruned node_modules, dist/ and the models.
FROM debian:bookworm-slim
COPY --from=node /usr/local/bin/node /usr/local/bin/node
# uid and gid 1000, as in Dockerfile.cuda and deploy/k8s (runAsUser: 1000).
RUN groupadd --gid 1000 spotgate && useradd --uid 1000 --gid 1000 --no-create-home --shell /usr/sbin/nologin spotgate
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    MODEL_REPOSITORY=/app/models \
    EXECUTION_PROVIDERS=cpu \
    BATCH_STORAGE_URL=file:///data/batches
WORKDIR /app
COPY package.json package-lock.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
# The guard, and the fake metadata service docker-compose.yml runs from this image.
COPY --from=build /app/dist/scripts/check-install.js /app/dist/scripts/fake-metadata.js ./dist/scripts/
COPY --from=build /app/dist/scripts/lib/check-install.js /app/dist/scripts/lib/fake-imds.js ./dist/scripts/lib/
# Baked in, so start-up only loads and warms them (no download before readiness).
COPY --from=build /app/models ./models
# The guard once more on what ships, down to opening a model with onnxruntime (the
# model instances' child processes load the same files). Owned by root, read-only for
# the process, which runs as uid 1000 (numeric, so Kubernetes' runAsNonRoot can verify
# it). Batch files are its only writes: mount a directory every replica shares there
# (or use s3://).
RUN node dist/scripts/check-install.js --model models/classifier/1/model.onnx \
 && mkdir -p /data/batches && chown 1000:1000 /data/batches
USER 1000:1000
EXPOSE 8080
# Liveness, not readiness: a draining instance is alive. Node's fetch, no curl needed.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/health/live').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM starts the drain; Docker waits `stop_grace_period` (Compose) before SIGKILL:
# give it DRAIN_GRACE_MS + DRAIN_TIMEOUT_MS and a margin (35 s for the defaults).
STOPSIGNAL SIGTERM
# Exec form: node is PID 1 and receives SIGTERM itself (it installs handlers, so PID 1's
# default-ignore does not apply). Its only child processes are the model instances
# (MODEL_ISOLATION=process), which it spawns and waits for itself.
CMD ["node", "dist/src/main.js"]
