#!/usr/bin/env bash
# Usage: run-in-vm.sh [--timeout SECONDS] [--mem MB] [--share DIR] [--disk FILE] -- CMD [ARGS...]
#
# Runs CMD inside a QEMU guest whose kernel has ublk_drv (see kernel.sh), in the caller's cwd,
# on a copy-on-write view of the host's root: what the host built is what the guest runs.
# CMD's stdout+stderr stream to our stdout while it runs; our own messages go to stderr.
# Exit status: CMD's; 97 when the VM could not run it (no qemu, no kernel, did not boot, guest has
# no /dev/ublk-control); 98 on timeout. The reason is printed on stderr (and written to
# <run dir>/host-reason).
#
# Passed to the guest: CI, NODE_OPTIONS, PATH, every UBLK_TS_* variable, plus UBLK_TS_IN_VM=1 and
# UBLK_TS_VM_KERNEL=<uname -r of the guest>.
# Knobs: UBLK_TS_VM_KEEP=1 keeps the run dir; UBLK_TS_VM_NO_UBLK=1 boots without ublk_drv (to
# test this harness); UBLK_TS_VM_VERBOSE=1 puts every kernel message on the console log;
# UBLK_TS_VM_BOOT_TIMEOUT (s, default 180): a guest not at its init by then is killed and booted
# once more; UBLK_TS_VM_CACHE (kernel cache, see kernel.sh).
#
# --share DIR: use DIR (outside the host's /tmp is safest) as the run dir and leave it in place;
# it is writable from the guest at the same path, which is how callers get files back.
# --disk FILE: attach FILE (raw) as a virtio-blk disk with 2 queues; the guest sees /dev/vda. QEMU
# moves its data on the host (its I/O threads), so the guest's vCPUs do no copy for it: a disk
# that completes asynchronously, as an SSD does by DMA and interrupt (the benchmark's ext4-disk).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
timeout=1800 mem=4096 share="" disk=""
while [ $# -gt 0 ]; do
  case $1 in
    --timeout) timeout=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --share) share=$2; shift 2 ;;
    --disk) disk=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: run-in-vm.sh [--timeout SECONDS] [--mem MB] [--share DIR] [--disk FILE] -- CMD [ARGS...]" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "run-in-vm: no command given" >&2; exit 2; }
[ -z "$disk" ] || [ -f "$disk" ] || { echo "run-in-vm: --disk $disk: no such file" >&2; exit 2; }

log() { printf 'run-in-vm: %s\n' "$*" >&2; }
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
secs() { printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)); }
t0=$(now_ms)

if [ -n "$share" ]; then
  mkdir -p "$share"; run=$(cd "$share" && pwd); own_run=0
else
  # Under the repo, not the host's /tmp: the guest has its own /tmp. Runs killed with -9 leave
  # their dirs behind: prune those older than a day.
  find "$repo/.cache/vm-run" -mindepth 1 -maxdepth 1 -mtime +1 -exec rm -rf {} + 2>/dev/null || true
  run="$repo/.cache/vm-run/$(date +%Y%m%d-%H%M%S)-$$"; mkdir -p "$run"; own_run=1
fi

qpid="" tpid=""
cleanup() {
  [ -n "$qpid" ] && kill "$qpid" 2>/dev/null || true
  [ -n "$tpid" ] && kill "$tpid" 2>/dev/null || true
  if [ "$own_run" = 1 ] && [ "${UBLK_TS_VM_KEEP:-0}" != 1 ]; then rm -rf "$run"; fi
  if [ "${UBLK_TS_VM_KEEP:-0}" = 1 ]; then log "kept $run"; fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# One paragraph on stderr saying why the command did not run, with the end of the console log.
give_up() {  # give_up CODE MESSAGE
  local code=$1; shift
  {
    echo "run-in-vm: FAILED: $*"
    if [ -s "$run/qemu.log" ]; then echo "--- qemu said:"; tail -n 20 "$run/qemu.log"; fi
    if [ -s "$run/console.log" ]; then echo "--- last lines of the guest console ($run/console.log):"; tail -n 25 "$run/console.log"; fi
  } >&2
  echo "$*" > "$run/host-reason"
  exit "$code"
}

for tool in qemu-system-x86_64 cpio gzip xz; do
  command -v "$tool" >/dev/null || give_up 97 "'$tool' is not installed on the host; run test/vm/host-deps.sh (as root) to install the VM harness's packages."
done
kdir=$("$here/kernel.sh") || give_up 97 "could not get the guest kernel (test/vm/kernel.sh failed, see above); run test/vm/host-deps.sh and check that apt can reach Debian's trixie-backports."
initrd=$("$here/initrd.sh" "$kdir") || give_up 97 "could not build the guest initramfs (test/vm/initrd.sh failed, see above)."
kver=$(cat "$kdir/kernel-release")

# What the guest's init reads; values are single-quoted for sh.
q() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }
keep=""
for p in "$repo" "$PWD"; do case $p in /tmp/*) keep="$keep $p" ;; esac; done
{
  echo "RUN_DIR=$(q "$run")"
  echo "CWD=$(q "$PWD")"
  echo "KEEP=$(q "$keep")"
  echo "NO_UBLK=$(q "${UBLK_TS_VM_NO_UBLK:-0}")"
} > "$run/config"
{
  for name in $(compgen -e); do
    case $name in CI|NODE_OPTIONS|PATH|UBLK_TS_*) echo "export $name=$(q "${!name}")" ;; esac
  done
  echo "export UBLK_TS_IN_VM=1 UBLK_TS_VM_KERNEL=$(q "$kver")"
} > "$run/env.sh"
{ printf 'exec'; for a in "$@"; do printf ' %s' "$(q "$a")"; done; echo; } > "$run/cmd.sh"
rm -f "$run"/{out.log,status,booted,finished,ublk-control,guest-error,host-reason,console.log,qemu.log}
: > "$run/out.log"

boot_timeout=${UBLK_TS_VM_BOOT_TIMEOUT:-180}
# Kernel messages on the console: warnings only (quiet) unless UBLK_TS_VM_VERBOSE=1 or retrying.
verbose=${UBLK_TS_VM_VERBOSE:-0}
deadline=$((t0 + timeout * 1000)) booted_ms="" timed_out=0 boot_stuck=0

boot() {
  local append="console=ttyS0 panic=-1"
  [ "$verbose" = 1 ] || append="$append quiet"
  # QEMU's stdin is /dev/null (CI has none) and the console goes to a file, not stdio.
  # Commas in -virtfs and -drive paths are escaped by doubling them.
  local drive=()
  [ -z "$disk" ] || drive=(-drive "file=${disk//,/,,},if=none,id=disk0,format=raw,cache=writeback,aio=threads"
                           -device virtio-blk-pci,drive=disk0,num-queues=2)
  qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m "$mem" -smp 2 \
    -nodefaults -display none -monitor none -no-reboot \
    -serial "file:$run/console.log" \
    -kernel "$kdir/vmlinuz" -initrd "$initrd" -append "$append" \
    -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
    -virtfs "local,path=${run//,/,,},mount_tag=share,security_model=none,multidevs=remap" \
    "${drive[@]}" </dev/null >"$run/qemu.log" 2>&1 &
  qpid=$!
  # Stream the command's output as the guest writes it (9p writes land in the host file at once).
  tail -n +1 -F -s 0.5 --pid="$qpid" "$run/out.log" 2>/dev/null &
  tpid=$!
  local boot_deadline=$(( $(now_ms) + boot_timeout * 1000 ))
  while kill -0 "$qpid" 2>/dev/null; do
    if [ -z "$booted_ms" ] && [ -s "$run/booted" ]; then
      booted_ms=$(( $(now_ms) - t0 ))
      log "guest up after $(secs "$booted_ms")s (guest uptime $(cat "$run/booted")s)"
    fi
    if [ "$(now_ms)" -ge "$deadline" ]; then timed_out=1; fi
    if [ -z "$booted_ms" ] && [ "$(now_ms)" -ge "$boot_deadline" ]; then boot_stuck=1; fi
    if [ "$timed_out" = 1 ] || [ "$boot_stuck" = 1 ]; then
      kill "$qpid" 2>/dev/null || true
      sleep 1; kill -9 "$qpid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  qrc=0; wait "$qpid" || qrc=$?; qpid=""
  wait "$tpid" 2>/dev/null || true; tpid=""
}

log "kernel $kver; booting (TCG, 2 vCPUs, $mem MiB, timeout ${timeout}s) for: $*"
boot
if [ "$timed_out" = 0 ] && [ ! -s "$run/booted" ]; then
  # Seen under TCG, each once in many boots: the guest hung before its init reached the shared
  # dir, with 1 vCPU spinning; and the guest kernel panicked during boot (in
  # ktime_get_real_ts64, from kdamond, before any of our code ran). A second boot went through
  # both times. Keep the first console log and retry once, verbosely.
  mv "$run/console.log" "$run/console-attempt1.log"
  if [ "$boot_stuck" = 1 ]; then why="did not reach its init within ${boot_timeout}s"; else why="stopped before its init ran (qemu exit status $qrc)"; fi
  log "WARNING: the guest $why; retrying once with a verbose console (first console log: console-attempt1.log)"
  verbose=1 boot_stuck=0
  boot
fi
total=$(secs $(( $(now_ms) - t0 )))

if [ "$timed_out" = 1 ]; then
  give_up 98 "the VM did not finish within ${timeout}s (--timeout); it was killed. The command's output so far is above."
fi
if [ -f "$run/status" ]; then
  rc=$(cat "$run/status")
  log "command exited $rc; total ${total}s (boot $(secs "${booted_ms:-0}")s, guest uptime at end $(cat "$run/finished" 2>/dev/null || echo ?)s)"
  exit "$rc"
fi
if grep -qx missing "$run/ublk-control" 2>/dev/null; then
  if [ "${UBLK_TS_VM_NO_UBLK:-0}" = 1 ]; then
    why="the guest (kernel $kver) has no /dev/ublk-control because UBLK_TS_VM_NO_UBLK=1 told it not to load ublk_drv"
  else
    why="the guest (kernel $kver) has no /dev/ublk-control even after loading ublk_drv (see the console for insmod errors)"
  fi
  give_up 97 "$why, so the command was not run."
fi
if [ -s "$run/guest-error" ]; then
  give_up 97 "the guest's init gave up: $(cat "$run/guest-error")."
fi
if [ "$boot_stuck" = 1 ]; then
  give_up 97 "the guest did not reach its init within ${boot_timeout}s (UBLK_TS_VM_BOOT_TIMEOUT), twice; see the console below."
fi
if [ ! -f "$run/booted" ]; then
  give_up 97 "the VM did not start or did not boot to its init (qemu exit status $qrc after ${total}s); see the QEMU and console output below."
fi
give_up 97 "the guest stopped before the command finished (qemu exit status $qrc after ${total}s: kernel panic, out of memory, or a crash?)."
