#!/usr/bin/env bash
# Host packages the tests use, idempotently (the VM's root is the host's root, so what is
# installed here runs in the guest too):
#  - prometheus: a real Prometheus server scrapes `ublk-ts serve` in test/integration/service.test.ts,
#    and its promtool lints the exposition (test/unit/metrics.test.ts too);
#  - python3: plays systemd's notify socket (Node has no unix datagram sockets);
#  - systemd: `systemd-analyze verify` on the units (test/unit/systemd-units.test.ts);
#  - nbdkit, qemu-utils (qemu-nbd, qemu-img): the NBD servers of test/integration/nbd.test.ts;
#    nbd-client: the kernel's NBD driver, the nbd rows of the benchmark.
set -euo pipefail

PACKAGES=(prometheus python3 systemd nbdkit qemu-utils nbd-client)

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else echo "test-deps: need root (or sudo) for: $*" >&2; exit 1
  fi
}

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test-deps: installing: ${missing[*]}" >&2
  as_root apt-get update -qq
  # the tests start their own prometheus with their own config; the packaged service is not used
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "test-deps: ok" >&2
