# modhub server image: hub (SQLite + blob files under /data) and inference on one port.
#   docker build -t modhub .            # CPU
#   docker build --build-arg ORT_INSTALL=cuda -t modhub:cuda .   # fetch onnxruntime's CUDA files (npm run install:cuda; needs network to them)
#   docker run -p 8080:8080 -v modhub-data:/data modhub [--base /data/base]
# At scale (replicas sharing PostgreSQL + an S3 bucket): set MODHUB_DATABASE_URL, MODHUB_BLOB_URL and MODHUB_S3_*; see
# docs/scale.md and deploy/.
FROM node:20-bookworm-slim AS build
# sqlite3 builds from source with node-gyp when no prebuilt binary matches.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ARG ORT_INSTALL=skip
COPY package.json package-lock.json ./
# onnxruntime-node's postinstall fetches CUDA files from api.nuget.org (the CPU binaries ship in the package).
# package.json's allowScripts denies that only where npm reads allowScripts (recent npm 11); node:20 ships npm
# 10.8.2, which ignores it and runs the script (the build fails where nuget is unreachable, or the image gains
# the CUDA files). So skip it here; the CUDA image asks for it (install:cuda sets ONNXRUNTIME_NODE_INSTALL=true).
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci && if [ "$ORT_INSTALL" = cuda ]; then npm run install:cuda; fi
COPY tsconfig.json ./
COPY server ./server
COPY modules-store ./modules-store
COPY client-sdk ./client-sdk
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
# tini reaps zombies and forwards SIGTERM, so the server's graceful drain runs on `docker stop`.
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
# the demo base and modules `serve` serves and seeds by default (trained by examples/multilingual/recipe.sh)
COPY demo ./demo
ENV MODHUB_DATA=/data NODE_ENV=production
RUN mkdir -p /data && chown node:node /data
# The image's unprivileged `node` user runs the server; /data is its volume.
USER node
VOLUME /data
EXPOSE 8080
# Ready = catalog reachable, base loaded and warmed up, not draining (GET /readyz).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--", "node", "dist/server/cli.js", "serve", "--host", "0.0.0.0", "--port", "8080", "--data", "/data"]
