#!/usr/bin/env bash
# Prepares a fresh Debian/Ubuntu machine to build and test ublk-ts; safe to run again.
#  1. apt: the addon's build deps (C++ toolchain, python3 for node-gyp, liburing);
#  2. the VM harness's host packages and apt source (test/vm/host-deps.sh), and what the
#     tests use (scripts/test-deps.sh: prometheus, systemd-analyze, nbdkit, qemu-nbd, nbd-client);
#  3. npm ci (npm install when there is no lockfile), which also builds the addon;
#  4. npm run build:ts, and npm's cache filled for the package test (scripts/warm-package-cache.sh).
# Needs Node.js >= 20 and npm already on PATH. Runs apt as root (or through sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else log "need root (or sudo) for: $*"; exit 1
  fi
}

command -v node >/dev/null && command -v npm >/dev/null ||
  { log "node and npm (Node.js >= 20) must be installed first"; exit 1; }
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || { log "Node.js $(node -v) is too old: need >= 20"; exit 1; }

build_deps=(build-essential python3 pkg-config liburing-dev)
missing=()
for p in "${build_deps[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

bash test/vm/host-deps.sh
bash scripts/test-deps.sh

if [ -f package-lock.json ]; then
  log "npm ci"
  npm ci --no-audit --no-fund
else
  log "npm install (no package-lock.json)"
  npm install --no-audit --no-fund
fi

log "npm run build:ts"
npm run build:ts
# the package test installs the packed ublk-ts in the VM, offline, from npm's cache
bash scripts/warm-package-cache.sh
log "done"
