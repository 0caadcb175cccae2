#!/usr/bin/env bash
# Installs what the VM harness needs on the host, idempotently:
#  - an apt source for Debian's trixie-backports suite, pinned low, so that kernel.sh can
#    `apt-get download` a kernel that ships ublk_drv without anything on the host being upgraded;
#  - the host tools that boot and serve the guest (qemu, busybox, cpio, xz) and the tools the
#    integration tests run inside it (fio, e2fsprogs: the guest's root IS the host's root).
# Runs `apt-get update` only when a package is missing or the backports index is absent.
set -euo pipefail

PACKAGES=(qemu-system-x86 busybox-static cpio xz-utils gzip kmod zstd fio e2fsprogs util-linux
          debian-archive-keyring)
SOURCE_FILE=/etc/apt/sources.list.d/trixie-backports.sources
PIN_FILE=/etc/apt/preferences.d/trixie-backports-low

log() { printf 'host-deps: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else log "need root (or sudo) for: $*"; exit 1
  fi
}

# Writes $2 into file $1 only when the content differs; returns 0 when it changed the file.
write_if_changed() {
  local path=$1 content=$2
  if [ -f "$path" ] && [ "$(cat "$path")" = "$content" ]; then return 1; fi
  printf '%s\n' "$content" | as_root tee "$path" >/dev/null
  log "wrote $path"
}

missing_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
  done
}

need_update=0

# The keyring named by Signed-By comes from debian-archive-keyring (already there on Debian;
# on Ubuntu it is a normal package). Install it before the source is used.
if [ -n "$(missing_packages debian-archive-keyring)" ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debian-archive-keyring
fi

if write_if_changed "$SOURCE_FILE" "Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"; then need_update=1; fi

# Priority 50 (< 100 of installed packages, < 500 of the host's suites): apt never picks a
# trixie-backports version on its own; kernel.sh only downloads from it.
write_if_changed "$PIN_FILE" "Package: *
Pin: release n=trixie-backports
Pin-Priority: 50" || true

# No backports index yet (fresh machine, or lists cleaned): update.
if ! ls /var/lib/apt/lists/*trixie-backports*Packages* >/dev/null 2>&1; then need_update=1; fi

missing=$(missing_packages "${PACKAGES[@]}")
if [ -n "$missing" ]; then need_update=1; fi

if [ "$need_update" = 1 ]; then
  log "apt-get update"
  as_root apt-get update -qq
fi
if [ -n "$missing" ]; then
  log "installing: $(echo $missing)"
  # -t is not given: these come from the host's own suites (the pin keeps backports out).
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi
log "ok"
