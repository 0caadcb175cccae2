// The protection-key rights (PKRU) a queue thread runs with. Node (V8) takes a memory protection key
// at startup (for its code space), so every thread of a Node process, the queue threads too,
// starts with a PKRU other than the kernel's default. The kernel then writes PKRU on each switch
// between a queue thread and an idle or kernel thread, twice per request at low queue depth.
// On hardware a WRPKRU costs little; under QEMU's TCG each one flushes the vCPU's software TLB
// (the measurement: bench/README.md, "PKRU").
// A queue thread never touches V8's memory, so it takes the kernel's default rights instead.
#pragma once

namespace ublk {

// Sets the calling thread's PKRU to the kernel's default (debugfs x86/init_pkru when readable,
// else the documented 0x55555554: keys 1-15 access-disabled) when the CPU and kernel use
// protection keys and the value differs.
void reset_thread_pkru();

}  // namespace ublk
