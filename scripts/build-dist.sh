#!/usr/bin/env bash
# Builds the agent as JavaScript into OUT (default: dist/), the form the
# container image runs: TypeScript's own emit of the runtime folders
# (tsconfig.build.json; relative .ts imports rewritten to .js, comments
# kept) and the netns addon beside it, in the repository's layout. OUT must
# lie inside the repository (or beside a node_modules) for packages to resolve.
#
# Why not run the .ts files as in development: Node's type stripping keeps
# its WASM stripper resident, ~18 MiB of the idle agent's RSS
# (bench/RESULTS.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$root/dist}")
rm -rf "$out"
"$root/node_modules/.bin/tsc" -p "$root/tsconfig.build.json" --outDir "$out"
mkdir -p "$out/netns/native/build/Release"
cp "$root/netns/native/build/Release/netns.node" "$out/netns/native/build/Release/"
