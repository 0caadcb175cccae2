// The target interface: what a target implements (TargetOps) and what the engine offers it
// (TargetDevice here, QueueThread's "for targets" section in queue_thread.h). docs/targets.md
// walks through it with the null target (targets/null.cc) as the worked example.
//
// The engine owns /dev/ublkcN, the rings, the tags, the commands and the data modes; a target
// decides what each request means for its store. A target never branches on the data mode: it
// names a file, an offset and a length, and QueueThread::start_data moves the bytes whichever way
// the device was set up (copy buffer, user copy, zero copy auto or explicit).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data_mode.h"

namespace ublk {

class QueueThread;
struct DeviceConfig;

// The options of one target, as JavaScript gave them (ServeOptions.target.options): names to
// strings, numbers, booleans or lists of numbers. The TypeScript descriptor has validated them;
// init reads what it needs and says which one is missing or mistyped.
class TargetArgs {
 public:
  struct Value {
    enum Type { String, Number, Bool, Numbers } type = String;
    std::string s;
    double n = 0;
    bool b = false;
    std::vector<double> list;
  };
  void set(const std::string &k, Value v) { values_[k] = std::move(v); }

  // Each reads one option into *out; false (with `why` naming the option) when it is absent and
  // required, or of another type. An absent optional option leaves *out as it was.
  bool str(const char *k, std::string *out, std::string &why, bool required = false) const;
  bool u64(const char *k, uint64_t *out, std::string &why, bool required = false) const;
  bool flag(const char *k, bool *out, std::string &why) const;
  bool numbers(const char *k, std::vector<uint64_t> *out, std::string &why, bool required = false) const;

 private:
  const Value *find(const char *k, Value::Type t, std::string &why, bool required, bool *ok) const;
  std::map<std::string, Value> values_;
};

// Memory a queue thread shares with JavaScript (QueueThread::expose): it lives as long as either
// side holds it, so a JavaScript view never outlives what it sees.
struct SharedRegion {
  void *ptr = nullptr;
  size_t len = 0;
  void (*release)(void *ptr, size_t len) = nullptr;
  SharedRegion(void *p, size_t n, void (*r)(void *, size_t)) : ptr(p), len(n), release(r) {}
  ~SharedRegion() {
    if (release) release(ptr, len);
  }
  SharedRegion(const SharedRegion &) = delete;
  SharedRegion &operator=(const SharedRegion &) = delete;
};

// What a target sets up for its device, once, before any queue thread starts (TargetOps::init),
// and tears down after the last one ended (deinit). Queue threads read it; only the target
// changes what it put in `data`, under its own synchronisation.
struct TargetDevice {
  const DeviceConfig *cfg = nullptr;
  // Registered on every queue ring after /dev/ublkcN: file i is fixed file 1 + i
  // (QueueThread::target_file). A backing file, a socket per queue, the layers of an image.
  std::vector<int> files;
  // Scratch bytes the engine gives every tag of every queue thread (QueueThread::tag_data),
  // zeroed before the first request: the target's own per-request state.
  unsigned tag_bytes = 0;
  // The target's device-wide state: made by init, freed by deinit.
  void *data = nullptr;
};

// One request's data moved between the request and a target file (QueueThread::start_data), in
// the device's data mode. A short transfer is resumed where it stopped; -EAGAIN is retried.
struct DataIo {
  int file = 0;           // fixed-file index: QueueThread::target_file(i), or what add_file gave
  uint64_t offset = 0;    // where in that file the request's first byte is; ignored for a socket
  uint32_t len = 0;       // bytes, from the start of the request's data
  bool to_file = false;   // true: the request's bytes go to the file (a WRITE); false: from it
  int rw_flags = 0;       // RWF_* for the file I/O (RWF_DSYNC for a FUA write)
  bool then_target = false;  // when done, call TargetOps::data_done instead of completing

  // A connected stream socket instead of a file: sends and receives with MSG_WAITALL (a short
  // transfer is an error: the stream's framing is lost), zero copy through SEND_ZC from and
  // READ_FIXED into the request's registered pages. Not in user-copy mode.
  bool socket = false;
  // Bytes sent right before the data, in the same operation where the mode allows (a request
  // header): SENDMSG of both in copy mode, a linked SEND in zero copy. Must stay valid until done.
  const void *prefix = nullptr;
  uint32_t prefix_len = 0;
  // Copy mode, socket: send the tag's buffer with SEND_ZC (the kernel pins it, no copy into the
  // socket's buffers) instead of SEND.
  bool send_zc = false;
  // Keep a chain going: the SQEs of this transfer follow the caller's last SQE (which carries
  // IOSQE_IO_LINK), and with link_out the caller's next SQE follows them. Socket writes of several
  // requests stay in order this way.
  bool link_out = false;
  // Socket send: more of the stream follows in the chain (MSG_MORE), so TCP holds these bytes
  // for one segment with the next instead of pushing each request alone (bench/README.md "NBD
  // sends").
  bool more = false;
};

// A completion of an SQE the target submitted (QueueThread::target_sqe): for `tag`, or for no
// tag (kNoTag), with the target's own operation and sub-index from its user_data.
struct TargetCqe {
  unsigned tag;
  unsigned op;
  unsigned sub;
  int res;
  unsigned flags;  // the CQE's flags (IORING_CQE_F_MORE, F_BUFFER ...)
};

// What a target can serve. The engine refuses a data mode the target lacks before any device is
// made (the TypeScript descriptor says so first, with the same reason), and completes requests
// of a kind the target does not serve with -EOPNOTSUPP without calling it.
struct TargetCaps {
  unsigned data_modes = kAllDataModes;  // mode_bit()s
  const char *why_no_zero_copy = nullptr;  // shown when a zero-copy mode is refused
  bool flush = false;
  bool discard = false;
  bool write_zeroes = false;
  bool fua = false;
};

struct TargetOps {
  const char *name;
  TargetCaps caps;
  // Once per device, off Node's main thread, before any queue thread: read `args`, open what the
  // target needs, fill `dev`. 0 or -errno with `why`.
  int (*init)(TargetDevice &dev, const TargetArgs &args, std::string &why);
  // Once per device, after every queue thread ended (also after a failed start).
  void (*deinit)(TargetDevice &dev);
  // Every request the kernel hands over (a kind the target serves, allowed on a read-only
  // device): submit SQEs (start_data, target_sqe) or complete at once (QueueThread::complete).
  void (*queue_io)(QueueThread &q, unsigned tag);
  // The CQE of each SQE the target took from target_sqe().
  void (*io_done)(QueueThread &q, const TargetCqe &c);

  // Optional (nullptr when not needed):
  // On each queue thread, after its ring exists and before its first FETCH: per-thread state
  // (QueueThread::target_queue_data), files of its own (add_file), I/O that belongs to no tag.
  int (*init_queue)(QueueThread &q, std::string &why);
  // On each queue thread, after its loop ended and its ring is gone.
  void (*deinit_queue)(QueueThread &q);
  // A start_data() with `then_target` finished moving the bytes (res: bytes, or -errno).
  void (*data_done)(QueueThread &q, unsigned tag, int res);
  // Someone called QueueThread::wake_target() (another thread, JavaScript): on the queue thread.
  void (*handle_event)(QueueThread &q);
  // After every pass of the queue's loop, once the pass's requests went through queue_io: where a
  // target sends what it gathered (one chain of socket writes, one hand-off to JavaScript).
  void (*pass_done)(QueueThread &q);
  // Before any device exists, off Node's main thread: what the target can learn of its store
  // (a server's size and flags), as JSON text for its TypeScript descriptor. 0 or -errno + why.
  int (*probe)(const TargetArgs &args, std::string &facts_json, std::string &why);
  // Names of the target's own counters (at most kMaxTargetCounters, nullptr-terminated), kept per
  // queue thread in native memory (QueueThread::count) and exported with the metrics.
  const char *const *counters;
  // Its queues are served on Node's main thread, on its event loop, instead of threads of their
  // own (a target whose requests go to JavaScript: no hop between threads per request). Every op
  // then runs on that thread; what blocks there blocks JavaScript.
  bool on_event_loop = false;
};

// The target registry (target_registry.cc): every target by name, in one list.
const TargetOps *find_target(const std::string &name);
std::vector<const TargetOps *> all_targets();

}  // namespace ublk
