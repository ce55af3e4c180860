# syntax=docker/dockerfile:1
# spotgate, CPU image: docker build -t spotgate .
# The GPU image is Dockerfile.cuda.

# ── build: dev dependencies, TypeScript, the sample models ─────────────────────────
FROM node:20-bookworm AS build
WORKDIR /app
# .npmrc skips onnxruntime-node's CUDA download: the CPU build is in the npm package.
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY scripts ./scripts
COPY models ./models
# Compiles src/ and scripts/, then writes models/*/<version>/model.onnx.
RUN npm run build

# ── runtime: production dependencies, compiled code, models baked in ──────────────
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    MODEL_REPOSITORY=/app/models \
    EXECUTION_PROVIDERS=cpu
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# Baked in, so start-up only loads and warms them (no download before readiness).
COPY --from=build /app/models ./models
# Owned by root, read-only for the process: the image's `node` user (uid 1000) runs it.
USER node
EXPOSE 8080
# Liveness, not readiness: a draining instance is alive. Node's fetch, no curl needed.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/health/live').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM starts the drain; Docker waits `stop_grace_period` (Compose) before SIGKILL:
# give it DRAIN_GRACE_MS + DRAIN_TIMEOUT_MS and a margin (35 s for the defaults).
STOPSIGNAL SIGTERM
# Exec form: node is PID 1 and receives SIGTERM itself (it installs handlers, so PID 1's
# default-ignore does not apply; the gateway starts no child processes to reap).
CMD ["node", "dist/src/main.js"]
