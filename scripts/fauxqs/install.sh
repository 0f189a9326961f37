#!/usr/bin/env bash
# Installs the pinned AWS emulator (fauxqs) and the Node 22 runtime it needs
# into a cache directory, from the npm registry:
#   $FAUXQS_DIR (default: <repo>/.cache/fauxqs)
# Idempotent: when the cache already holds this exact lock file's install it
# returns at once. Prints the cache directory on stdout (last line).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../lib/npm-install.sh
. "$repo/scripts/lib/npm-install.sh"
npm_install "$here" "${FAUXQS_DIR:-$repo/.cache/fauxqs}" node_modules/fauxqs/dist/cli.js \
  package.json package-lock.json loopback.mjs
