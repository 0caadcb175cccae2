#!/usr/bin/env bash
# Fetches the guest kernel for the VM harness and prints the directory that holds it:
#   <dir>/vmlinuz         the kernel
#   <dir>/modules/*.ko    the modules the guest needs, decompressed (busybox insmod cannot read .ko.xz)
#   <dir>/load-order      one module name per line, dependencies first (from this kernel's modules.dep)
#   <dir>/kernel-release  what `uname -r` says in the guest
# The kernel comes from Debian's trixie-backports (its ublk_drv has every feature up to BATCH_IO;
# the host's bookworm kernel is 6.1). The version is resolved from the linux-image-amd64
# metapackage at run time, because the suite moves; nothing is installed, only downloaded.
# Everything is cached (UBLK_TS_VM_CACHE, default $XDG_CACHE_HOME/ublk-ts-vm): a cached kernel
# costs one apt-cache query. Needs the apt source from host-deps.sh.
set -euo pipefail

CACHE=${UBLK_TS_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ublk-ts-vm}
# What the guest loads; their dependencies (modules.dep) and pre-soft-dependencies
# (modules.softdep, e.g. jbd2 -> crc32c) are added. Built-in ones are skipped.
#  9p stack + overlay: the guest's root is the host's root, read-only, with a tmpfs on top;
#  ublk_drv: what is tested; loop: the kernel's own loop driver, to compare against;
#  ext4: filesystem round trips on ublk disks.
#  brd: a RAM disk for the benchmark's backing filesystem (ext4 on it has NOWAIT I/O; tmpfs
#        has none, and io_uring hands every tmpfs read to a worker thread).
#  null_blk: the benchmark's `BENCH_BACKING=nullb`, a disk that completes asynchronously and
#        moves no data (loaded without devices; the benchmark makes one through configfs).
#  virtio_blk: the disk run-in-vm.sh --disk attaches (the benchmark's `BENCH_BACKING=ext4-disk`).
WANT=(9pnet_virtio 9p overlay ublk_drv loop ext4 brd null_blk virtio_blk nbd)
# Bump when the layout of the cache dir changes.
LAYOUT=1

log() { printf 'kernel: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

newest_cached() {
  ls -1dt "$CACHE"/kernel-*/ 2>/dev/null | while read -r d; do
    [ -f "$d/.complete" ] && { echo "${d%/}"; break; }
  done
}

use_cached() {  # use_cached WHY: fall back to the newest cached kernel, or fail
  local d; d=$(newest_cached)
  [ -n "$d" ] || die "$1; run test/vm/host-deps.sh (it runs apt-get update) and try again"
  log "$1; using the cached $(cat "$d/kernel-release")"
  echo "$d"; exit 0
}

resolve() {  # sets kver (uname -r of the kernel) and pkgver (its Debian version)
  kver=$(apt-cache depends -t trixie-backports linux-image-amd64 2>/dev/null |
         sed -n 's/^ *Depends: linux-image-\([0-9].*\)$/\1/p' | head -n1) || true
  pkgver=""
  [ -n "$kver" ] || return 0
  pkgver=$(apt-cache policy "linux-binary-$kver" | sed -n 's/^ *Candidate: *//p')
  [ "$pkgver" != "(none)" ] || pkgver=""
}

download() {  # into $work
  # As root, apt drops to user _apt, which cannot write here; the files are checked against
  # the signed index either way.
  local opts=(); [ "$(id -u)" = 0 ] && opts=(-o APT::Sandbox::User=root)
  (cd "$work" && apt-get download -q "${opts[@]}" "linux-binary-$kver=$pkgver" \
     "linux-modules-$kver=$pkgver" "linux-base-$kver=$pkgver" >&2)
}

resolve
# No apt index for trixie-backports (offline, or host-deps.sh not run): a cached kernel will do.
[ -n "$kver" ] && [ -n "$pkgver" ] ||
  use_cached "apt knows no trixie-backports kernel (apt-cache depends -t trixie-backports linux-image-amd64)"

stamp="layout=$LAYOUT want=${WANT[*]}"
cache_dir() { echo "$CACHE/kernel-$kver-${pkgver//[^A-Za-z0-9.+-]/_}"; }
dir=$(cache_dir)
if [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$stamp" ]; then
  echo "$dir"; exit 0
fi

mkdir -p "$CACHE"
work=$(mktemp -d "$CACHE/tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "fetching $kver ($pkgver)"
if ! download; then
  # A stale index names .debs the mirror no longer has: refresh it once (root only), else fall back.
  if [ "$(id -u)" = 0 ]; then
    log "download failed; apt-get update and retry"
    apt-get update -qq >&2 || true
    resolve
    dir=$(cache_dir)
    if [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$stamp" ]; then echo "$dir"; exit 0; fi
    rm -f "$work"/*.deb
    download || use_cached "cannot download the trixie-backports kernel $kver"
  else
    use_cached "cannot download the trixie-backports kernel $kver"
  fi
fi
root="$work/root"
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$root"; done
mdir="$root/usr/lib/modules/$kver"
[ -f "$mdir/vmlinuz" ] || die "linux-binary-$kver has no usr/lib/modules/$kver/vmlinuz"

# Debian ships no modules.dep (the postinst runs depmod): make one. depmod -b looks in
# <base>/lib/modules on bookworm and <base>/usr/lib/modules on later releases.
[ -e "$root/lib" ] || ln -s usr/lib "$root/lib"
command -v depmod >/dev/null || PATH=$PATH:/usr/sbin:/sbin
depmod -b "$root" "$kver" || die "depmod failed (is kmod installed? run test/vm/host-deps.sh)"

# Resolve the load order: for each module, its pre-soft-deps, then its hard deps (modules.dep lists
# them so that loading from the end of the list works), then itself.
declare -A path deps alias softpre builtin seen
while IFS= read -r line; do
  f=${line%%:*}; n=${f##*/}; n=${n%%.ko*}; n=${n//-/_}
  path[$n]=$f
  d=""; for x in ${line#*:}; do x=${x##*/}; x=${x%%.ko*}; d="$d ${x//-/_}"; done
  deps[$n]=$d
done < "$mdir/modules.dep"
while read -r _ a m; do alias[$a]=$m; done < <(grep '^alias ' "$mdir/modules.alias")
while read -r _ m rest; do
  # "softdep jbd2 pre: crypto-crc32c post: x" -> keep what follows pre: up to post:
  pre=$(sed -n 's/.*pre:\(.*\)/\1/p' <<<"$rest" | sed 's/post:.*//')
  softpre[$m]=$pre
done < <(grep '^softdep ' "$mdir/modules.softdep" || true)
while IFS= read -r f; do n=${f##*/}; n=${n%%.ko*}; builtin[${n//-/_}]=1; done < "$mdir/modules.builtin"

order=()
add() {  # add NAME [soft]
  local n=${1//-/_} i
  [ -n "${path[$n]:-}" ] || [ -n "${builtin[$n]:-}" ] || n=${alias[$1]:-$n}
  [ -z "${seen[$n]:-}" ] || return 0
  seen[$n]=1
  [ -z "${builtin[$n]:-}" ] || return 0
  if [ -z "${path[$n]:-}" ]; then
    [ -n "${2:-}" ] && { log "soft dependency $1 not found; skipped"; return 0; }
    die "module $1 is neither in modules.dep nor built in"
  fi
  for i in ${softpre[$n]:-}; do add "$i" soft; done
  local -a d=(${deps[$n]}); for ((i=${#d[@]}-1; i>=0; i--)); do add "${d[i]}"; done
  order+=("$n")
}
for m in "${WANT[@]}"; do add "$m"; done

out="$work/out"; mkdir -p "$out/modules"
cp "$mdir/vmlinuz" "$out/vmlinuz"
cp "$mdir/config" "$out/config" 2>/dev/null || true
echo "$kver" > "$out/kernel-release"
echo "$pkgver" > "$out/package-version"
for n in "${order[@]}"; do
  f="$mdir/${path[$n]}"
  case $f in
    *.ko.xz)  xz -dc "$f" ;;
    *.ko.zst) zstd -qdc "$f" ;;
    *.ko.gz)  gzip -dc "$f" ;;
    *.ko)     cat "$f" ;;
  esac > "$out/modules/$n.ko"
  echo "$n" >> "$out/load-order"
done
echo "$stamp" > "$out/.complete"
rm -rf "$dir"; mv "$out" "$dir"
log "cached $kver: $(echo "${order[@]}")"
echo "$dir"
