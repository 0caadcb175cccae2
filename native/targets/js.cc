// js target: a disk whose requests are served by JavaScript (a module's read/write/... handlers,
// targets/js.ts). Its queues are served on Node's main thread (on_event_loop): a pass of a queue's
// ring hands the pass's requests to JavaScript at once (one call), and JavaScript's completions
// are committed on the ring as they are written (wake, once per turn of JavaScript's microtasks).
// Why not a queue thread of its own: bench/README.md, "JavaScript on the event loop".
//
// Shared with JavaScript per queue thread ("requests", 32-bit words; n = the queue depth):
//   [0]              n
//   [1]              done_tail: completions JavaScript has written (it writes, we read)
//   [4 .. 4+n)       the ring of arriving tags: tag of request number i at 4 + i % n
//   [4+n .. 4+3n)    the completion ring: (tag, result) of completion number i at 4+n + 2(i % n)
//   [4+3n .. 4+11n)  per tag: op, flags, offset low, offset high, length (8 words each)
// and the engine's "buffers" (copy mode): tag t's bytes at t * max_io_buf_bytes. A request's
// number is its place in the ring; the signal carries the number after the last one of the pass.
#include <sys/mman.h>

#include <cstring>

#include "../queue_thread.h"

namespace ublk {

namespace {

constexpr unsigned kHeader = 4;
constexpr unsigned kTagWords = 8;

struct JsQueue {
  std::shared_ptr<SharedRegion> region;
  uint32_t *words = nullptr;
  unsigned n = 0;
  uint32_t arrived = 0;    // requests written to the ring
  uint32_t signalled = 0;  // ... of which JavaScript was told
  uint32_t done = 0;       // completions taken back

  uint32_t *ring() { return words + kHeader; }
  uint32_t *completions() { return words + kHeader + n; }
  uint32_t *tag_words(unsigned tag) { return words + kHeader + 3 * n + tag * kTagWords; }
};

JsQueue &jsq(QueueThread &q) { return *static_cast<JsQueue *>(q.target_queue_data); }

int js_init(TargetDevice &, const TargetArgs &, std::string &) { return 0; }
void js_deinit(TargetDevice &) {}

int js_init_queue(QueueThread &q, std::string &why) {
  auto *j = new JsQueue();
  j->n = q.config().depth;
  const size_t len = page_round((kHeader + 3 * (size_t)j->n + kTagWords * (size_t)j->n) * sizeof(uint32_t));
  void *m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (m == MAP_FAILED) {
    delete j;
    why = "allocating the memory shared with JavaScript";
    return -errno;
  }
  madvise(m, len, MADV_DONTFORK);  // as the tag buffers: not for the children Node spawns
  j->region = std::make_shared<SharedRegion>(m, len, [](void *p, size_t l) { munmap(p, l); });
  j->words = static_cast<uint32_t *>(m);
  j->words[0] = j->n;
  q.expose("requests", j->region);
  q.target_queue_data = j;
  return 0;
}

void js_deinit_queue(QueueThread &q) {
  delete &jsq(q);  // the region stays while JavaScript holds a view of it
  q.target_queue_data = nullptr;
}

void js_queue_io(QueueThread &q, unsigned tag) {
  JsQueue &j = jsq(q);
  const io_desc &d = q.desc(tag);
  uint32_t *w = j.tag_words(tag);
  const uint64_t off = d.start_sector << 9;
  w[0] = desc_op(&d);
  w[1] = d.op_flags;
  w[2] = (uint32_t)off;
  w[3] = (uint32_t)(off >> 32);
  w[4] = desc_op(&d) == kOpFlush ? 0 : d.nr_sectors << 9;
  j.ring()[j.arrived % j.n] = tag;
  j.arrived++;
}

// Once per pass: JavaScript hears of every request that arrived in it, with one signal.
void js_pass_done(QueueThread &q) {
  JsQueue &j = jsq(q);
  if (j.arrived == j.signalled) return;
  // JavaScript reads the words above inside this call, on this thread (on_event_loop)
  j.signalled = j.arrived;
  q.signal(j.arrived);
}

// JavaScript wrote completions and called wake (on this thread): complete them on this ring.
void js_handle_event(QueueThread &q) {
  JsQueue &j = jsq(q);
  const uint32_t tail = j.words[1];
  while (j.done != tail) {
    const uint32_t *c = j.completions() + 2 * (j.done % j.n);
    const unsigned tag = c[0];
    const int res = (int)c[1];
    j.done++;
    if (q.holds(tag)) q.complete(tag, res);
  }
}

void js_io_done(QueueThread &q, const TargetCqe &c) { q.complete(c.tag, c.res); }

}  // namespace

extern const TargetOps js_target = {
    "js",
    {mode_bit(DataMode::Copy), "a JavaScript target reads and writes the request's bytes itself: copy mode only",
     /*flush*/ true, /*discard*/ true, /*write_zeroes*/ true, /*fua*/ true},
    js_init,
    js_deinit,
    js_queue_io,
    js_io_done,
    js_init_queue,
    js_deinit_queue,
    nullptr,  // data_done
    js_handle_event,
    js_pass_done,
    nullptr,  // probe
    nullptr,  // counters
    /*on_event_loop*/ true,
};

}  // namespace ublk
