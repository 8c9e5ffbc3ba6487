#!/usr/bin/env bash
# Bundles the collector's web page (web/main.ts and the libraries it imports:
# d3-shape, d3-scale, dagre) into web/build/app.js with esbuild, minified: the
# page is served from this file by agent/web/server.ts, no CDN. ./run setup
# runs it when a file of web/ is newer than the bundle; scripts/build-dist.sh
# copies the result.
#
#   scripts/build-web.sh [--if-changed]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/web/build/app.js
if [ "${1:-}" = --if-changed ] && [ -f "$out" ] \
   && [ -z "$(find "$root/web" -path "$root/web/build" -prune -o -newer "$out" -name '*.ts' -print -quit)" ]; then
  exit 0
fi
"$root/node_modules/.bin/esbuild" "$root/web/main.ts" --bundle --minify --format=esm --target=es2022 \
  --legal-comments=none --log-level=warning --outfile="$out"
