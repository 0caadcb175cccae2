#!/usr/bin/env bash
# Usage: initrd.sh KERNEL_DIR   (the directory kernel.sh printed)
# Packs the guest's initramfs: busybox-static, the decompressed modules and load order from
# KERNEL_DIR, and test/vm/init as /init. Prints the path of the gzipped cpio, which lives in
# KERNEL_DIR and is named after a hash of its inputs, so it is rebuilt only when one changes.
set -euo pipefail

kdir=${1:?usage: initrd.sh KERNEL_DIR}
here=$(cd "$(dirname "$0")" && pwd)
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || busybox=/bin/busybox
[ -x "$busybox" ] || { echo "initrd: no busybox (install busybox-static: test/vm/host-deps.sh)" >&2; exit 1; }
# A dynamically linked busybox would need its libraries in the initramfs too.
if ldd "$busybox" >/dev/null 2>&1; then
  echo "initrd: $busybox is dynamically linked; install busybox-static" >&2; exit 1
fi

hash=$( { cat "$here/init" "$busybox" "$kdir/load-order"; cat "$kdir"/modules/*.ko; } | sha256sum | cut -c1-16)
out="$kdir/initrd-$hash.gz"
if [ -f "$out" ]; then echo "$out"; exit 0; fi

stage=$(mktemp -d "$kdir/initrd-stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib/modules"
cp "$busybox" "$stage/bin/busybox"
cp "$here/init" "$stage/init"; chmod 755 "$stage/init"
cp "$kdir/load-order" "$kdir"/modules/*.ko "$stage/lib/modules/"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -6 > "$out.tmp"
rm -f "$kdir"/initrd-*.gz
mv "$out.tmp" "$out"
echo "initrd: built $out" >&2
echo "$out"
