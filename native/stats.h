// Per-queue counters in native memory. The queue thread is the only writer (relaxed atomics,
// no locks, no syscalls); Prometheus scrapes and `stats()` read them from the main thread.
// Nothing is pushed to JavaScript per I/O.
#pragma once

#include <atomic>
#include <cstdint>

namespace ublk {

enum OpIndex : unsigned { kStatRead, kStatWrite, kStatFlush, kStatDiscard, kStatWriteZeroes, kStatOther, kNumStatOps };

inline const char *stat_op_name(unsigned i) {
  static const char *names[kNumStatOps] = {"read", "write", "flush", "discard", "write_zeroes", "other"};
  return names[i];
}

// Upper bounds in microseconds, block I/O from a fast cache hit to a stalled device; +Inf last.
constexpr unsigned kLatencyBuckets[] = {10,     25,     50,     100,    250,     500,     1000,
                                        2500,   5000,   10000,  25000,  50000,   100000,  250000,
                                        500000, 1000000, 2500000, 5000000, 10000000};
constexpr unsigned kNumLatencyBuckets = sizeof(kLatencyBuckets) / sizeof(kLatencyBuckets[0]) + 1;

// How many counters of its own a target may keep per queue thread.
constexpr unsigned kMaxTargetCounters = 8;

struct QueueCounters {
  std::atomic<uint64_t> ops[kNumStatOps]{};
  std::atomic<uint64_t> bytes[kNumStatOps]{};
  std::atomic<uint64_t> errors[kNumStatOps]{};
  std::atomic<uint64_t> inflight{0};
  // Non-cumulative per bucket; exported cumulatively.
  std::atomic<uint64_t> latency[kNumLatencyBuckets]{};
  std::atomic<uint64_t> latency_sum_us{0};
  std::atomic<uint64_t> js_calls{0};
  // AUTO_BUF_REG: requests whose pages the kernel could not install in the buffer table
  // (UBLK_IO_F_NEED_REG_BUF), which the server then registered by hand.
  std::atomic<uint64_t> zc_fallback_regs{0};
  // The target's own counters (TargetOps::counters names them): reconnects, bytes on a wire...
  std::atomic<uint64_t> target[kMaxTargetCounters]{};

  static void bump(std::atomic<uint64_t> &c, uint64_t n = 1) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  void record(unsigned op, uint64_t nbytes, bool error, uint64_t latency_us) {
    bump(ops[op]);
    if (error) bump(errors[op]);
    else bump(bytes[op], nbytes);
    unsigned b = 0;
    while (b < kNumLatencyBuckets - 1 && latency_us > kLatencyBuckets[b]) b++;
    bump(latency[b]);
    bump(latency_sum_us, latency_us);
  }
};

// Plain totals of one or more threads' counters, read when stats are asked for (a scrape): a queue
// served by several threads (--threads-per-queue) reports the sum of its threads.
struct CounterTotals {
  uint64_t ops[kNumStatOps]{};
  uint64_t bytes[kNumStatOps]{};
  uint64_t errors[kNumStatOps]{};
  uint64_t inflight = 0;
  uint64_t latency[kNumLatencyBuckets]{};
  uint64_t latency_sum_us = 0;
  uint64_t js_calls = 0;
  uint64_t zc_fallback_regs = 0;
  uint64_t target[kMaxTargetCounters]{};

  void add(const QueueCounters &c) {
    auto get = [](const std::atomic<uint64_t> &a) { return a.load(std::memory_order_relaxed); };
    for (unsigned k = 0; k < kNumStatOps; k++) {
      ops[k] += get(c.ops[k]);
      bytes[k] += get(c.bytes[k]);
      errors[k] += get(c.errors[k]);
    }
    inflight += get(c.inflight);
    for (unsigned b = 0; b < kNumLatencyBuckets; b++) latency[b] += get(c.latency[b]);
    latency_sum_us += get(c.latency_sum_us);
    js_calls += get(c.js_calls);
    zc_fallback_regs += get(c.zc_fallback_regs);
    for (unsigned i = 0; i < kMaxTargetCounters; i++) target[i] += get(c.target[i]);
  }
};

inline unsigned stat_index(unsigned ublk_op) {
  switch (ublk_op) {
    case 0: return kStatRead;
    case 1: return kStatWrite;
    case 2: return kStatFlush;
    case 3: return kStatDiscard;
    case 5: return kStatWriteZeroes;
    default: return kStatOther;
  }
}

}  // namespace ublk
