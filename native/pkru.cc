#include "pkru.h"

#if defined(__x86_64__)
#include <cpuid.h>

#include <cstdio>
#endif

namespace ublk {

#if defined(__x86_64__)
namespace {

// CPUID.(EAX=7,ECX=0):ECX bit 4, OSPKE: the CPU has PKU and the kernel enabled it (CR4.PKE).
// Without it RDPKRU/WRPKRU raise #UD.
bool os_uses_pkeys() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return (c & (1u << 4)) != 0;
}

unsigned rdpkru() {
  unsigned eax, edx;
  __asm__ volatile(".byte 0x0f, 0x01, 0xee" : "=a"(eax), "=d"(edx) : "c"(0));
  return eax;
}

void wrpkru(unsigned v) { __asm__ volatile(".byte 0x0f, 0x01, 0xef" : : "a"(v), "c"(0), "d"(0) : "memory"); }

unsigned kernel_default_pkru() {
  unsigned v = 0x55555554;
  if (FILE *f = fopen("/sys/kernel/debug/x86/init_pkru", "re")) {
    unsigned x;
    if (fscanf(f, "%x", &x) == 1) v = x;  // printed as 0x55555554
    fclose(f);
  }
  return v;
}

}  // namespace

void reset_thread_pkru() {
  if (!os_uses_pkeys()) return;
  static const unsigned want = kernel_default_pkru();
  if (rdpkru() != want) wrpkru(want);
}
#else
void reset_thread_pkru() {}  // protection keys as above are x86's
#endif

}  // namespace ublk
