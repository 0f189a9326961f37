#!/usr/bin/env bash
# Installs the pinned DynamoDB emulator (dynalite) and the Node 22 runtime it
# runs on into a cache directory, from the npm registry:
#   $DYNALITE_DIR (default: <repo>/.cache/dynalite)
# Idempotent: when the cache already holds this exact lock file's install it
# returns at once. Prints the cache directory on stdout (last line).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../lib/npm-install.sh
. "$repo/scripts/lib/npm-install.sh"
npm_install "$here" "${DYNALITE_DIR:-$repo/.cache/dynalite}" node_modules/dynalite/cli.js \
  package.json package-lock.json
