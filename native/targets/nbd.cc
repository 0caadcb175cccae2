// nbd target: the disk is an export of an NBD server (nbdkit, qemu-nbd, a storage system's
// gateway), one connection per queue, served on the queue threads' rings. Options (targets/nbd.ts):
// host + port or unix, name, reconnect (0: off), reconnectTimeoutMs, ioTimeoutMs, sendZc.
//
// Per queue: a loop pass's requests go out in one SENDMSG of no tag (every header, and in copy
// mode the write data from the tags' buffers), followed in one linked chain by the writes whose
// data goes from the request's own pages or by SEND_ZC (DataIo, the header as its prefix), so the
// stream stays in order; one operation instead of a chain of one send per request, whose every
// link costs the ring a task-work round (bench/README.md "NBD sends"). Replies are read by a
// receive loop of no tag. A bulk receive takes what the
// socket holds (up to kRxBytes) and the replies are parsed from it; in copy mode a read's data is
// copied to its tag's buffer and what of it is not there yet received straight into that buffer.
// Zero copy reads a reply at a time while a read is on the wire (16-byte header, then the data
// straight into the request's pages: bytes in our buffer could not reach them), and in bulk only
// while none is (reads wait for that receive to end). The reply's handle (tag + the tag's request
// count) finds the request; a reply that fits no request in flight, a short read, an error from
// the socket or a request without a reply for ioTimeoutMs ends the connection, never the server.
// Then, with reconnect (the disk was added with -r 1): the queue holds its requests while a
// helper thread connects again with backoff for up to reconnectTimeoutMs, and sends them all
// again on the new connection; without (or when that fails): the queue ends with the error and
// the device server stops the disk (or leaves it QUIESCED for `recover` with -r 1).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "../queue_thread.h"

namespace ublk {

namespace {

// ---- the wire (NBD protocol, doc/proto.md; every integer big-endian) --------------------------
constexpr uint64_t kNbdMagic = 0x4e42444d41474943ULL;  // "NBDMAGIC"
constexpr uint64_t kOptMagic = 0x49484156454f5054ULL;  // "IHAVEOPT"
constexpr uint64_t kOptReplyMagic = 0x3e889045565a9ULL;
constexpr uint64_t kOldstyleMagic = 0x00420281861253ULL;
constexpr uint32_t kRequestMagic = 0x25609513;
constexpr uint32_t kSimpleReplyMagic = 0x67446698;
constexpr uint16_t kFlagFixedNewstyle = 1 << 0, kFlagNoZeroes = 1 << 1;
constexpr uint32_t kOptExportName = 1, kOptAbort = 2, kOptGo = 7;
constexpr uint32_t kRepAck = 1, kRepInfo = 3, kRepErrBit = 1u << 31;
constexpr uint16_t kInfoExport = 0, kInfoBlockSize = 3;
constexpr uint16_t kTxReadOnly = 1 << 1, kTxCanMultiConn = 1 << 8;
constexpr uint16_t kCmdRead = 0, kCmdWrite = 1, kCmdDisc = 2, kCmdFlush = 3, kCmdTrim = 4, kCmdWriteZeroes = 6;
constexpr uint16_t kCmdFlagFua = 1 << 0, kCmdFlagNoHole = 1 << 1;

struct __attribute__((packed)) WireRequest {
  uint32_t magic;
  uint16_t flags;
  uint16_t type;
  uint64_t handle;
  uint64_t offset;
  uint32_t length;
};
static_assert(sizeof(WireRequest) == 28, "NBD request header");

struct __attribute__((packed)) WireReply {
  uint32_t magic;
  uint32_t error;
  uint64_t handle;
};
static_assert(sizeof(WireReply) == 16, "NBD simple reply");

uint64_t be64(uint64_t v) { return htobe64(v); }
uint64_t from_be64(uint64_t v) { return be64toh(v); }

const char *rep_err_name(uint32_t t) {
  switch (t & ~kRepErrBit) {
    case 1: return "unsupported option";
    case 2: return "refused by the server's policy";
    case 3: return "invalid";
    case 4: return "not supported on this platform";
    case 5: return "TLS required";
    case 6: return "unknown export";
    case 7: return "server shutting down";
    case 8: return "block size required";
    case 9: return "request too big";
    default: return "error";
  }
}

// NBD error numbers are Linux's (EPERM 1, EIO 5, ENOMEM 12, EINVAL 22, ENOSPC 28, EOVERFLOW 75,
// ENOTSUP 95, ESHUTDOWN 108); anything else is EIO.
int request_error(uint32_t e) {
  switch (e) {
    case 1: case 5: case 12: case 22: case 28: case 75: case 95: case 108: return -(int)e;
    default: return -EIO;
  }
}

// ---- connecting and the handshake (blocking: probe, init and the reconnect thread) ------------
struct Endpoint {
  std::string host, unix_path, name;
  uint16_t port = 10809;
  std::string describe() const { return unix_path.empty() ? host + ":" + std::to_string(port) : unix_path; }
};

struct Export {
  uint64_t size = 0;
  uint16_t flags = 0;
  uint32_t min_bs = 0, pref_bs = 0, max_bs = 0;  // 0: the server did not say
};

constexpr int kHandshakeTimeoutMs = 10000;

// Whole reads and writes on a blocking socket with a timeout (SO_RCVTIMEO/SO_SNDTIMEO set).
int read_all(int fd, void *buf, size_t n) {
  auto *p = static_cast<uint8_t *>(buf);
  while (n > 0) {
    ssize_t r = recv(fd, p, n, 0);
    if (r == 0) return -ECONNRESET;
    if (r < 0) return errno == EINTR ? 0 : -errno;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

int write_all(int fd, const void *buf, size_t n) {
  auto *p = static_cast<const uint8_t *>(buf);
  while (n > 0) {
    ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

void set_timeouts(int fd, int ms) {
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

int connect_socket(const Endpoint &ep, int *out, std::string &why) {
  if (!ep.unix_path.empty()) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return why = "socket", -errno;
    struct sockaddr_un sa = {};
    sa.sun_family = AF_UNIX;
    if (ep.unix_path.size() >= sizeof(sa.sun_path)) {
      close(fd);
      why = "the unix socket path is too long";
      return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, ep.unix_path.c_str(), ep.unix_path.size() + 1);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
      int e = -errno;
      close(fd);
      why = "connect to " + ep.unix_path;
      return e;
    }
    *out = fd;
    return 0;
  }
  struct addrinfo hints = {}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = AF_UNSPEC;
  std::string port = std::to_string(ep.port);
  int g = getaddrinfo(ep.host.c_str(), port.c_str(), &hints, &res);
  if (g != 0) {
    why = "cannot resolve " + ep.host + ": " + gai_strerror(g);
    return -EHOSTUNREACH;
  }
  int err = -ECONNREFUSED;
  for (struct addrinfo *a = res; a; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    set_timeouts(fd, kHandshakeTimeoutMs);
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      freeaddrinfo(res);
      *out = fd;
      return 0;
    }
    err = -errno;
    close(fd);
  }
  freeaddrinfo(res);
  why = "connect to " + ep.describe();
  return err;
}

// One option's replies until ACK; fills `ex` from NBD_INFO_EXPORT / NBD_INFO_BLOCK_SIZE.
int read_go_replies(int fd, uint32_t opt, Export *ex, std::string &why) {
  for (;;) {
    struct __attribute__((packed)) {
      uint64_t magic;
      uint32_t option, type, length;
    } h;
    int r = read_all(fd, &h, sizeof(h));
    if (r < 0) return why = "the server closed the connection during the handshake", r;
    if (from_be64(h.magic) != kOptReplyMagic || ntohl(h.option) != opt) return why = "not an NBD server (bad option reply)", -EPROTO;
    uint32_t type = ntohl(h.type), len = ntohl(h.length);
    if (len > 65536) return why = "option reply too long", -EPROTO;
    std::vector<uint8_t> data(len);
    if (len && (r = read_all(fd, data.data(), len)) < 0) return why = "the server closed the connection during the handshake", r;
    if (type & kRepErrBit) {
      why = std::string("the server refused: ") + rep_err_name(type);
      if (len) why += " (" + std::string(data.begin(), data.end()) + ")";
      return (type & ~kRepErrBit) == 1 ? -EOPNOTSUPP : (type & ~kRepErrBit) == 6 ? -ENOENT : -EACCES;
    }
    if (type == kRepAck) return 0;
    if (type != kRepInfo || len < 2) continue;
    uint16_t info = (uint16_t)(data[0] << 8 | data[1]);
    if (info == kInfoExport && len >= 12) {
      uint64_t size;
      uint16_t flags;
      memcpy(&size, &data[2], 8);
      memcpy(&flags, &data[10], 2);
      ex->size = from_be64(size);
      ex->flags = ntohs(flags);
    } else if (info == kInfoBlockSize && len >= 14) {
      uint32_t v[3];
      memcpy(v, &data[2], 12);
      ex->min_bs = ntohl(v[0]);
      ex->pref_bs = ntohl(v[1]);
      ex->max_bs = ntohl(v[2]);
    }
  }
}

int send_option(int fd, uint32_t opt, const std::vector<uint8_t> &data) {
  struct __attribute__((packed)) {
    uint64_t magic;
    uint32_t option, length;
  } h = {be64(kOptMagic), htonl(opt), htonl((uint32_t)data.size())};
  int r = write_all(fd, &h, sizeof(h));
  if (r == 0 && !data.empty()) r = write_all(fd, data.data(), data.size());
  return r;
}

// Fixed newstyle: NBD_OPT_GO asking for the block sizes, NBD_OPT_EXPORT_NAME where GO is unknown.
int handshake(int fd, const std::string &name, Export *ex, std::string &why) {
  struct __attribute__((packed)) {
    uint64_t magic, opt_magic;
    uint16_t flags;
  } hello;
  int r = read_all(fd, &hello, sizeof(hello));
  if (r < 0) return why = r == -EAGAIN ? "no NBD greeting within 10 s (is this an NBD server?)" : "the server closed the connection before its greeting", r;
  if (from_be64(hello.magic) != kNbdMagic) return why = "not an NBD server (no NBDMAGIC greeting)", -EPROTO;
  if (from_be64(hello.opt_magic) == kOldstyleMagic) return why = "the server speaks the oldstyle protocol only", -EPROTO;
  if (from_be64(hello.opt_magic) != kOptMagic) return why = "not an NBD server (bad greeting)", -EPROTO;
  uint16_t sflags = ntohs(hello.flags);
  if (!(sflags & kFlagFixedNewstyle)) return why = "the server does not speak fixed newstyle", -EPROTO;
  uint32_t cflags = htonl(kFlagFixedNewstyle | (sflags & kFlagNoZeroes));
  if ((r = write_all(fd, &cflags, 4)) < 0) return why = "sending the client flags", r;

  std::vector<uint8_t> go(4 + name.size() + 2 + 2);
  uint32_t nlen = htonl((uint32_t)name.size());
  memcpy(go.data(), &nlen, 4);
  memcpy(go.data() + 4, name.data(), name.size());
  uint16_t one = htons(1), bs = htons(kInfoBlockSize);
  memcpy(go.data() + 4 + name.size(), &one, 2);
  memcpy(go.data() + 6 + name.size(), &bs, 2);
  if ((r = send_option(fd, kOptGo, go)) < 0) return why = "sending NBD_OPT_GO", r;
  r = read_go_replies(fd, kOptGo, ex, why);
  if (r == -EOPNOTSUPP) {
    // an older server: NBD_OPT_EXPORT_NAME answers with the size and flags and no ACK
    std::vector<uint8_t> n(name.begin(), name.end());
    if ((r = send_option(fd, kOptExportName, n)) < 0) return why = "sending NBD_OPT_EXPORT_NAME", r;
    struct __attribute__((packed)) {
      uint64_t size;
      uint16_t flags;
    } e;
    if ((r = read_all(fd, &e, sizeof(e))) < 0) return why = "the server closed the connection (unknown export?)", r;
    uint8_t zeroes[124];
    if (!(sflags & kFlagNoZeroes) && (r = read_all(fd, zeroes, sizeof(zeroes))) < 0) return why = "short export reply", r;
    ex->size = from_be64(e.size);
    ex->flags = ntohs(e.flags);
    return 0;
  }
  return r;
}

// A connection in the transmission phase, ready for the rings: handshake timeouts cleared.
int open_connection(const Endpoint &ep, int *out, Export *ex, std::string &why) {
  int fd = -1;
  int r = connect_socket(ep, &fd, why);
  if (r < 0) return r;
  set_timeouts(fd, kHandshakeTimeoutMs);
  r = handshake(fd, ep.name, ex, why);
  if (r < 0) {
    close(fd);
    return r;
  }
  set_timeouts(fd, 0);
  *out = fd;
  return 0;
}

int read_endpoint(const TargetArgs &args, Endpoint *ep, std::string &why) {
  uint64_t port = 10809;
  if (!args.str("host", &ep->host, why) || !args.str("unix", &ep->unix_path, why) || !args.str("name", &ep->name, why) ||
      !args.u64("port", &port, why))
    return -EINVAL;
  if (ep->host.empty() == ep->unix_path.empty()) return why = "nbd needs host or unix, not both", -EINVAL;
  if (port == 0 || port > 65535) return why = "nbd port out of range", -EINVAL;
  ep->port = (uint16_t)port;
  return 0;
}

int nbd_probe(const TargetArgs &args, std::string &facts, std::string &why) {
  Endpoint ep;
  int r = read_endpoint(args, &ep, why);
  if (r < 0) return r;
  Export ex;
  int fd = -1;
  if ((r = open_connection(ep, &fd, &ex, why)) < 0) return r;
  WireRequest disc = {htonl(kRequestMagic), 0, htons(kCmdDisc), 0, 0, 0};
  write_all(fd, &disc, sizeof(disc));
  close(fd);
  facts = "{\"size\":" + std::to_string(ex.size) + ",\"flags\":" + std::to_string(ex.flags) + ",\"minBlock\":" +
          std::to_string(ex.min_bs) + ",\"preferredBlock\":" + std::to_string(ex.pref_bs) + ",\"maxBlock\":" +
          std::to_string(ex.max_bs) + "}";
  return 0;
}

// ---- the device: its connections, and the thread that makes new ones --------------------------
uint64_t now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

enum Counter : unsigned { kCntReconnects, kCntBytesSent, kCntBytesReceived };
const char *const kCounters[] = {"reconnects", "bytes_sent", "bytes_received", nullptr};

struct NbdDevice;

// What a queue asks the reconnect thread for, and what it gets back.
struct Reconnect {
  QueueThread *q = nullptr;
  bool wanted = false;
  uint64_t deadline_ms = 0;
  int fd = -1;  // the new connection, once made
  int err = 0;  // or why it could not be made (the deadline passed)
  std::string why;
};

struct NbdDevice {
  Endpoint ep;
  Export ex;
  bool reconnect = false;
  uint64_t reconnect_timeout_ms = 60000;
  uint64_t io_timeout_ms = 30000;
  bool send_zc = false;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Reconnect> want;  // per queue
  bool quit = false;
  std::thread thread;

  // Connects again for every queue that asked, with backoff, until each one's deadline.
  void run() {
    std::unique_lock<std::mutex> l(mu);
    uint64_t backoff = 100;
    while (!quit) {
      bool any = false;
      for (auto &w : want) any = any || (w.wanted && w.fd < 0 && w.err == 0);
      if (!any) {
        backoff = 100;
        cv.wait(l);
        continue;
      }
      for (unsigned q = 0; q < want.size() && !quit; q++) {
        Reconnect &w = want[q];
        if (!w.wanted || w.fd >= 0 || w.err != 0) continue;
        l.unlock();
        int fd = -1;
        Export now;
        std::string why;
        int r = open_connection(ep, &fd, &now, why);
        if (r == 0 && now.size < ex.size) {
          close(fd);
          r = -EINVAL;
          why = "the export shrank from " + std::to_string(ex.size) + " to " + std::to_string(now.size) + " bytes";
        }
        l.lock();
        if (r == 0) {
          w.fd = fd;
          w.q->wake_target();
        } else if (now_ms() >= w.deadline_ms) {
          w.err = r;
          w.why = why + ": " + strerror(-r);
          w.q->wake_target();
        } else {
          w.why = why + ": " + strerror(-r);
        }
      }
      if (!quit) cv.wait_for(l, std::chrono::milliseconds(backoff));
      backoff = std::min<uint64_t>(backoff * 2, 2000);
    }
  }
};

NbdDevice &device(QueueThread &q) { return *static_cast<NbdDevice *>(q.target_device().data); }

int nbd_init(TargetDevice &dev, const TargetArgs &args, std::string &why) {
  auto *d = new NbdDevice();
  uint64_t reconnect = 0;
  int r = read_endpoint(args, &d->ep, why);
  if (r == 0 && (!args.u64("reconnect", &reconnect, why) || !args.u64("reconnectTimeoutMs", &d->reconnect_timeout_ms, why) ||
                 !args.u64("ioTimeoutMs", &d->io_timeout_ms, why) || !args.flag("sendZc", &d->send_zc, why)))
    r = -EINVAL;
  d->reconnect = reconnect != 0;
  // one connection per queue (the descriptor lowered -q to 1 for a server without multi-conn)
  const unsigned nq = dev.cfg->nr_queues;
  for (unsigned q = 0; r == 0 && q < nq; q++) {
    int fd = -1;
    Export ex;
    r = open_connection(d->ep, &fd, &ex, why);
    if (r < 0) {
      why = d->ep.describe() + ": " + why;
      break;
    }
    if (q == 0) d->ex = ex;
    dev.files.push_back(fd);
    if (q == 1 && !(ex.flags & kTxCanMultiConn)) {
      why = "the server does not allow several connections (no NBD_FLAG_CAN_MULTI_CONN): use one queue";
      r = -EINVAL;
    }
  }
  if (r < 0) {
    for (int fd : dev.files) close(fd);
    dev.files.clear();
    delete d;
    return r;
  }
  d->want.resize(nq);
  if (d->reconnect) d->thread = std::thread([d] { d->run(); });
  dev.data = d;
  dev.tag_bytes = 64;  // NbdTag
  return 0;
}

void nbd_deinit(TargetDevice &dev) {
  auto *d = static_cast<NbdDevice *>(dev.data);
  if (d) {
    {
      std::lock_guard<std::mutex> l(d->mu);
      d->quit = true;
      for (auto &w : d->want)
        if (w.fd >= 0) close(w.fd);
    }
    d->cv.notify_all();
    if (d->thread.joinable()) d->thread.join();
  }
  for (int fd : dev.files) close(fd);
  dev.files.clear();
  delete d;
  dev.data = nullptr;
}

// ---- one queue: its connection, the requests on it ---------------------------------------------
enum TagState : uint8_t { kIdle, kQueued, kSending, kAwaiting, kReceiving };

struct NbdTag {
  WireRequest req;     // the header as sent
  uint16_t count;      // requests this tag has carried: the handle's upper bits
  TagState state;
  uint32_t len;        // bytes of a read or write
  uint32_t rx_left;    // copy mode: bytes of a read's data received straight into its buffer
  uint64_t sent_ms;    // for the request timeout
};
static_assert(sizeof(NbdTag) <= 64, "NbdTag fits the tag_bytes asked for");

enum NbdOp : unsigned { kOpSendBatch = 1, kOpRecvReply = 2, kOpTimer = 3, kOpRecvData = 4 };

// The most iovecs one SENDMSG takes (the kernel's UIO_MAXIOV); more requests wait for the next.
constexpr size_t kMaxIov = IOV_MAX;

// Copy mode's receive buffer: 32 KiB holds 2048 write replies or seven 4k reads; a larger read's
// data beyond it is received straight into the tag's buffer (one copy, not two). See
// bench/README.md "NBD receive".
constexpr uint32_t kRxBytes = 32 * 1024;

struct NbdQueue {
  int fd = -1;            // this queue's connection (the device's file, then reconnects')
  int fixed = 0;
  uint16_t conn = 0;      // connection number: CQEs of an older one are only drained
  bool up = true;
  bool broken = false;    // lost; its SQEs still draining
  bool dead = false;      // lost for good (no reconnect): every request fails with EIO
  unsigned old_ops = 0;   // SQEs in flight on the lost connection
  unsigned conn_ops = 0;  // SQEs in flight on this connection
  std::vector<unsigned> fifo;  // tags waiting to be sent, in arrival order
  unsigned sending = 0;   // tags of the send chain in flight
  // the chain's SENDMSG: its tags, iovecs and bytes (one chain in flight at a time)
  std::vector<unsigned> batch;
  std::vector<unsigned> linked;  // the chain's writes after it, with operations of their own
  std::vector<struct iovec> iov;
  struct msghdr msg = {};
  uint64_t batch_bytes = 0, batch_write_bytes = 0;
  unsigned on_wire = 0;   // requests sent, their replies not yet read
  unsigned reads_on_wire = 0;  // of them, reads with data
  WireReply reply;        // a reply at a time: the one being read
  bool copy_mode = false; // the tags have buffers: a read's data may pass through rx
  bool bulk_armed = false;  // the receive in flight is a bulk one (into rx)
  std::vector<uint8_t> rx;
  uint32_t rx_head = 0, rx_tail = 0;  // rx's bytes not yet parsed
  bool recv_armed = false;
  struct __kernel_timespec tick = {1, 0};
};

NbdQueue &queue(QueueThread &q) { return *static_cast<NbdQueue *>(q.target_queue_data); }
NbdTag &tag_of(QueueThread &q, unsigned tag) { return q.tag_state<NbdTag>(tag); }

uint64_t handle_of(unsigned tag, uint16_t count) { return ((uint64_t)count << 16) | tag; }

bool is_data_read(const NbdTag &t) { return ntohs(t.req.type) == kCmdRead && t.len > 0; }

bool fifo_has_read(QueueThread &q, const NbdQueue &nq) {
  for (unsigned tag : nq.fifo)
    if (is_data_read(tag_of(q, tag))) return true;
  return false;
}

void arm_recv(QueueThread &q, NbdQueue &nq) {
  struct io_uring_sqe *sqe = q.target_sqe(kNoTag, kOpRecvReply, nq.conn);
  // zero copy: in bulk only when replies are due and none of them, nor any read waiting, has data
  nq.bulk_armed = nq.copy_mode || (nq.on_wire > 0 && nq.reads_on_wire == 0 && !fifo_has_read(q, nq));
  if (nq.bulk_armed) {
    // what is left is less than one reply header: it moves to the front
    const uint32_t left = nq.rx_tail - nq.rx_head;
    if (left > 0 && nq.rx_head > 0) memmove(nq.rx.data(), nq.rx.data() + nq.rx_head, left);
    nq.rx_head = 0;
    nq.rx_tail = left;
    io_uring_prep_recv(sqe, nq.fixed, nq.rx.data() + left, nq.rx.size() - left, 0);
  } else {
    io_uring_prep_recv(sqe, nq.fixed, &nq.reply, sizeof(nq.reply), MSG_WAITALL);
  }
  sqe->flags |= IOSQE_FIXED_FILE;
  nq.recv_armed = true;
  nq.conn_ops++;
}

void arm_timer(QueueThread &q, NbdQueue &nq) {
  struct io_uring_sqe *sqe = q.target_sqe(kNoTag, kOpTimer, 0);
  io_uring_prep_timeout(sqe, &nq.tick, 0, 0);
}

void connection_lost(QueueThread &q, NbdQueue &nq, const std::string &why);

int nbd_init_queue(QueueThread &q, std::string &why) {
  auto *nq = new NbdQueue();
  NbdDevice &d = device(q);
  nq->fixed = QueueThread::target_file(q.queue_id());
  nq->fd = q.target_device().files[q.queue_id()];
  nq->fifo.reserve(q.config().depth);
  nq->batch.reserve(q.config().depth);
  nq->linked.reserve(q.config().depth);
  nq->iov.reserve(std::min<size_t>(kMaxIov, 2 * (size_t)q.config().depth));
  nq->copy_mode = q.tag_buffer(q.worker()) != nullptr;
  nq->rx.resize(kRxBytes);
  {
    std::lock_guard<std::mutex> l(d.mu);
    d.want[q.queue_id()].q = &q;
  }
  q.target_queue_data = nq;
  arm_recv(q, *nq);
  if (d.io_timeout_ms > 0) arm_timer(q, *nq);
  return 0;
}

void nbd_deinit_queue(QueueThread &q) {
  delete &queue(q);
  q.target_queue_data = nullptr;
}

void nbd_queue_io(QueueThread &q, unsigned tag) {
  NbdQueue &nq = queue(q);
  if (nq.dead) {
    q.complete(tag, -EIO);
    return;
  }
  const io_desc &desc = q.desc(tag);
  NbdTag &t = tag_of(q, tag);
  uint16_t type = kCmdRead, flags = 0;
  switch (desc_op(&desc)) {
    case kOpRead: type = kCmdRead; break;
    case kOpWrite: type = kCmdWrite; if (desc.op_flags & kIoFFua) flags |= kCmdFlagFua; break;
    case kOpFlush: type = kCmdFlush; break;
    case kOpDiscard: type = kCmdTrim; break;
    default: type = kCmdWriteZeroes; if (desc.op_flags & kIoFNoUnmap) flags |= kCmdFlagNoHole; break;
  }
  t.count++;
  t.len = type == kCmdFlush ? 0 : desc.nr_sectors << 9;
  t.req = {htonl(kRequestMagic), htons(flags), htons(type), handle_of(tag, t.count), be64(desc.start_sector << 9), htonl(t.len)};
  if (type == kCmdFlush) t.req.offset = 0;
  t.state = kQueued;
  nq.fifo.push_back(tag);
}

// Sends the waiting requests as one chain (the SENDMSG, then the writes with operations of their
// own), when no chain is in flight and the connection is up.
void nbd_pass_done(QueueThread &q) {
  NbdQueue &nq = queue(q);
  if (!nq.up || nq.sending > 0 || nq.fifo.empty()) return;
  // zero copy: a read's reply must not land in rx; it goes once the bulk receive is back
  if (!nq.copy_mode && nq.bulk_armed && fifo_has_read(q, nq)) return;
  NbdDevice &d = device(q);
  const uint64_t now = now_ms();
  nq.batch.clear();
  nq.linked.clear();
  nq.iov.clear();
  nq.batch_bytes = nq.batch_write_bytes = 0;
  size_t taken = 0;
  for (; taken < nq.fifo.size(); taken++) {
    const unsigned tag = nq.fifo[taken];
    NbdTag &t = tag_of(q, tag);
    const bool write_data = ntohs(t.req.type) == kCmdWrite && t.len > 0;
    if (write_data && (!nq.copy_mode || d.send_zc)) {
      nq.linked.push_back(tag);
    } else {
      if (nq.iov.size() + (write_data ? 2 : 1) > kMaxIov) break;
      nq.iov.push_back({&t.req, sizeof(t.req)});
      nq.batch_bytes += sizeof(t.req);
      if (write_data) {
        nq.iov.push_back({q.tag_buffer(tag), t.len});
        nq.batch_bytes += t.len;
        nq.batch_write_bytes += t.len;
      }
      nq.batch.push_back(tag);
    }
    t.state = kSending;
    t.sent_ms = now;
    nq.on_wire++;
    if (is_data_read(t)) nq.reads_on_wire++;
  }
  if (!nq.batch.empty()) {
    const bool more = !nq.linked.empty();
    struct io_uring_sqe *sqe = q.target_sqe(kNoTag, kOpSendBatch, nq.conn);
    nq.msg = {};
    nq.msg.msg_iov = nq.iov.data();
    nq.msg.msg_iovlen = nq.iov.size();
    io_uring_prep_sendmsg(sqe, nq.fixed, &nq.msg, MSG_WAITALL | MSG_NOSIGNAL | (more ? MSG_MORE : 0));
    sqe->flags |= IOSQE_FIXED_FILE | (more ? IOSQE_IO_LINK : 0);
    nq.conn_ops++;
  }
  for (size_t i = 0; i < nq.linked.size(); i++) {
    const unsigned tag = nq.linked[i];
    const bool last = i + 1 == nq.linked.size();
    NbdTag &t = tag_of(q, tag);
    DataIo io;
    io.file = nq.fixed;
    io.len = t.len;
    io.to_file = true;
    io.socket = true;
    io.prefix = &t.req;
    io.prefix_len = sizeof(t.req);
    io.send_zc = d.send_zc;
    io.link_out = !last;
    io.more = !last;
    io.then_target = true;
    q.start_data(tag, io);
    nq.conn_ops++;
  }
  nq.sending = (unsigned)(nq.batch.size() + nq.linked.size());
  nq.fifo.erase(nq.fifo.begin(), nq.fifo.begin() + (long)taken);
}

// Every request this queue holds goes out again on a new connection (they were sent, or not, on
// the old one; NBD requests may be repeated: a read reads again, a write writes the same bytes).
void requeue_all(QueueThread &q, NbdQueue &nq) {
  std::vector<unsigned> again;
  for (unsigned tag = q.worker(); tag < q.config().depth; tag += q.config().threads_per_queue) {
    NbdTag &t = tag_of(q, tag);
    if (t.state != kIdle && std::find(nq.fifo.begin(), nq.fifo.end(), tag) == nq.fifo.end()) again.push_back(tag);
  }
  for (unsigned tag : again) tag_of(q, tag).state = kQueued;
  nq.fifo.insert(nq.fifo.begin(), again.begin(), again.end());
}

// Fails everything the queue holds and ends it (no reconnect, or reconnecting failed).
void give_up(QueueThread &q, NbdQueue &nq, const std::string &why) {
  NbdDevice &d = device(q);
  nq.up = false;
  if (d.reconnect) {
    // -r 1: the disk outlives this server; the kernel keeps the requests for the next one
    q.report("error", why + "; leaving the disk to `ublk-ts recover`");
    q.fail(-ENOTCONN, why, true);
    return;
  }
  q.report("error", why + "; failing its I/O");
  nq.dead = true;
  // what is not on the wire fails now; what is (its SQE not back yet) as its CQE comes (fail_if_dead)
  for (unsigned tag = q.worker(); tag < q.config().depth; tag += q.config().threads_per_queue) {
    NbdTag &t = tag_of(q, tag);
    if (t.state == kQueued || t.state == kAwaiting) {
      t.state = kIdle;
      q.complete(tag, -EIO);
    }
  }
  nq.fifo.clear();
  q.fail(-ENOTCONN, why);
}

// A request whose SQE on the lost connection came back: with no connection to come, it fails.
void fail_if_dead(QueueThread &q, NbdQueue &nq, unsigned tag) {
  if (!nq.dead || tag == kNoTag) return;
  NbdTag &t = tag_of(q, tag);
  if (t.state == kIdle) return;
  t.state = kIdle;
  q.complete(tag, -EIO);
}

void connection_lost(QueueThread &q, NbdQueue &nq, const std::string &why) {
  if (!nq.up) return;
  nq.up = false;
  nq.broken = true;
  nq.old_ops = nq.conn_ops;
  nq.conn_ops = 0;
  nq.sending = 0;
  nq.recv_armed = false;
  nq.rx_head = nq.rx_tail = 0;  // the rest of the old stream is gone with it
  nq.on_wire = nq.reads_on_wire = 0;  // what was on it is sent again, or failed
  // what is still in flight on the old connection ends now (errors), so its requests can go again
  shutdown(nq.fd, SHUT_RDWR);
  NbdDevice &d = device(q);
  const std::string where = "queue " + std::to_string(q.queue_id()) + ", " + d.ep.describe() + ": ";
  if (!d.reconnect) {
    give_up(q, nq, where + "connection lost (" + why + ")");
    if (nq.old_ops == 0) nq.broken = false;
    return;
  }
  q.report("warn", where + "connection lost (" + why + "); reconnecting for up to " + std::to_string(d.reconnect_timeout_ms / 1000) + " s");
  {
    std::lock_guard<std::mutex> l(d.mu);
    Reconnect &w = d.want[q.queue_id()];
    w.wanted = true;
    w.fd = -1;
    w.err = 0;
    w.why.clear();
    w.deadline_ms = now_ms() + d.reconnect_timeout_ms;
  }
  d.cv.notify_all();
}

// A new connection is ready, and nothing of the old one is in flight: send everything again.
void resume(QueueThread &q, NbdQueue &nq) {
  NbdDevice &d = device(q);
  int fd = -1, err = 0;
  std::string why;
  {
    std::lock_guard<std::mutex> l(d.mu);
    Reconnect &w = d.want[q.queue_id()];
    if (!w.wanted || (w.fd < 0 && w.err == 0)) return;
    if (w.err != 0 && nq.old_ops == 0) {
      err = w.err;
      why = w.why;
      w.wanted = false;
    } else if (w.fd >= 0 && nq.old_ops == 0) {
      fd = w.fd;
      w.fd = -1;
      w.wanted = false;
    }
  }
  const std::string where = "queue " + std::to_string(q.queue_id()) + ", " + d.ep.describe() + ": ";
  if (err != 0) {
    give_up(q, nq, where + "could not reconnect within " + std::to_string(d.reconnect_timeout_ms / 1000) + " s (" + why + ")");
    return;
  }
  if (fd < 0) return;
  int r = q.replace_file(nq.fixed, fd);
  if (r < 0) {
    close(fd);
    give_up(q, nq, where + "cannot use the new connection: " + strerror(-r));
    return;
  }
  close(nq.fd);
  nq.fd = fd;
  nq.conn++;
  nq.up = true;
  nq.broken = false;
  q.count(kCntReconnects);
  requeue_all(q, nq);
  q.report("info", where + "reconnected; sending " + std::to_string(nq.fifo.size()) + " request(s) again");
  arm_recv(q, nq);
  nbd_pass_done(q);
}

// A CQE of the old connection: it only needs draining (its request goes again, or fails).
bool drained_old(QueueThread &q, NbdQueue &nq, unsigned conn, unsigned tag) {
  if (conn == nq.conn && !nq.broken) return false;
  if (nq.old_ops > 0) nq.old_ops--;
  fail_if_dead(q, nq, tag);
  if (nq.old_ops == 0 && !nq.dead) resume(q, nq);
  return true;
}

// The send chain's tag `tag` went out (or failed).
void sent(QueueThread &q, NbdQueue &nq, unsigned tag, int res, unsigned conn) {
  if (drained_old(q, nq, conn, tag)) return;
  nq.conn_ops--;
  NbdTag &t = tag_of(q, tag);
  if (res < 0) {
    t.state = kQueued;  // to be sent again, or failed
    connection_lost(q, nq, std::string("send: ") + strerror(-res));
    return;
  }
  if (ntohs(t.req.type) == kCmdWrite) q.count(kCntBytesSent, t.len);
  if (t.state == kSending) t.state = kAwaiting;
  if (nq.sending > 0) nq.sending--;
}

// The chain's SENDMSG went out whole (or failed, or stopped short: the stream's framing is lost).
void batch_sent(QueueThread &q, NbdQueue &nq, int res, unsigned conn) {
  if (conn != nq.conn || nq.broken) {
    for (unsigned tag : nq.batch) fail_if_dead(q, nq, tag);
    // cleared first: draining the last old operation may resume and send a new chain
    nq.batch.clear();
    drained_old(q, nq, conn, kNoTag);
    return;
  }
  nq.conn_ops--;
  if (res != (int64_t)nq.batch_bytes) {
    for (unsigned tag : nq.batch)
      if (tag_of(q, tag).state == kSending) tag_of(q, tag).state = kQueued;  // to be sent again, or failed
    nq.batch.clear();
    connection_lost(q, nq, res < 0 ? std::string("send: ") + strerror(-res) : "short send");
    return;
  }
  q.count(kCntBytesSent, nq.batch_write_bytes);
  for (unsigned tag : nq.batch)
    if (tag_of(q, tag).state == kSending) tag_of(q, tag).state = kAwaiting;
  nq.sending -= std::min<unsigned>(nq.sending, (unsigned)nq.batch.size());
  nq.batch.clear();
}

void reply_done(QueueThread &q, NbdQueue &nq) {
  if (nq.up) arm_recv(q, nq);
}

// The tag a reply header answers, or -1 when it fits no request in flight (the connection ended).
int reply_tag(QueueThread &q, NbdQueue &nq, const WireReply &r) {
  const unsigned tag = (unsigned)(r.handle & 0xffff);
  const uint16_t count = (uint16_t)(r.handle >> 16);
  if (ntohl(r.magic) != kSimpleReplyMagic) {
    connection_lost(q, nq, "protocol error: not a simple reply");
    return -1;
  }
  if (tag >= q.config().depth || tag_of(q, tag).count != count ||
      (tag_of(q, tag).state != kAwaiting && tag_of(q, tag).state != kSending)) {
    connection_lost(q, nq, "protocol error: a reply for a request not in flight");
    return -1;
  }
  NbdTag &t = tag_of(q, tag);
  // a reply that overtook its own send CQE: the request went out whole
  if (t.state == kSending) t.state = kAwaiting;
  if (nq.on_wire > 0) nq.on_wire--;
  if (is_data_read(t) && nq.reads_on_wire > 0) nq.reads_on_wire--;
  return (int)tag;
}

// Ends the request of a reply that carries no data (an error, a write, a flush ...): true, or false
// for a read with data still to come.
bool complete_reply(QueueThread &q, unsigned tag, const WireReply &r) {
  NbdTag &t = tag_of(q, tag);
  const uint32_t err = ntohl(r.error);
  if (err == 0 && is_data_read(t)) return false;
  t.state = kIdle;
  q.complete(tag, err != 0 ? request_error(err) : ntohs(t.req.type) == kCmdFlush ? 0 : (int)t.len);
  return true;
}

// Zero copy: one reply header read; a read's data follows straight into the request's pages.
void on_reply(QueueThread &q, NbdQueue &nq, int res) {
  if (res != (int)sizeof(nq.reply)) {
    connection_lost(q, nq, res < 0 ? std::string("receive: ") + strerror(-res) : res == 0 ? "the server closed it" : "short reply");
    return;
  }
  const int tag = reply_tag(q, nq, nq.reply);
  if (tag < 0) return;
  if (complete_reply(q, (unsigned)tag, nq.reply)) {
    reply_done(q, nq);
    return;
  }
  NbdTag &t = tag_of(q, (unsigned)tag);
  t.state = kReceiving;
  DataIo io;
  io.file = nq.fixed;
  io.len = t.len;
  io.socket = true;
  io.then_target = true;
  q.start_data((unsigned)tag, io);
  nq.conn_ops++;
}

// A bulk receive: `res` more bytes in rx; every whole reply in it ends its request. Copy mode: a
// read whose data is not all there yet gets the rest straight into its buffer, then the bulk
// receive goes on.
void on_bulk(QueueThread &q, NbdQueue &nq, int res) {
  if (res <= 0) {
    connection_lost(q, nq, res < 0 ? std::string("receive: ") + strerror(-res) : "the server closed it");
    return;
  }
  nq.rx_tail += (uint32_t)res;
  while (nq.rx_tail - nq.rx_head >= sizeof(WireReply)) {
    WireReply r;
    memcpy(&r, nq.rx.data() + nq.rx_head, sizeof(r));
    const int tag = reply_tag(q, nq, r);
    if (tag < 0) return;
    nq.rx_head += sizeof(r);
    if (complete_reply(q, (unsigned)tag, r)) continue;
    NbdTag &t = tag_of(q, (unsigned)tag);
    if (!nq.copy_mode) {
      // cannot happen (no read was on the wire); the stream's framing would be lost
      t.state = kQueued;
      connection_lost(q, nq, "a read's data in the bulk receive buffer in zero-copy mode");
      return;
    }
    const uint32_t have = std::min(t.len, nq.rx_tail - nq.rx_head);
    memcpy(q.tag_buffer((unsigned)tag), nq.rx.data() + nq.rx_head, have);
    nq.rx_head += have;
    if (have == t.len) {
      q.count(kCntBytesReceived, t.len);
      t.state = kIdle;
      q.complete((unsigned)tag, (int)t.len);
      continue;
    }
    // rx is empty now: the rest of this read goes straight into its buffer
    t.state = kReceiving;
    t.rx_left = t.len - have;
    struct io_uring_sqe *sqe = q.target_sqe((unsigned)tag, kOpRecvData, nq.conn);
    io_uring_prep_recv(sqe, nq.fixed, q.tag_buffer((unsigned)tag) + have, t.rx_left, MSG_WAITALL);
    sqe->flags |= IOSQE_FIXED_FILE;
    nq.conn_ops++;
    return;
  }
  arm_recv(q, nq);
}

// Copy mode: the rest of a read's data arrived in its buffer.
void on_bulk_data(QueueThread &q, NbdQueue &nq, unsigned tag, int res) {
  NbdTag &t = tag_of(q, tag);
  if (res != (int)t.rx_left) {
    t.state = kQueued;  // to be sent again, or failed
    connection_lost(q, nq, res < 0 ? std::string("receiving read data: ") + strerror(-res) : "the server closed it in a read's data");
    return;
  }
  q.count(kCntBytesReceived, t.len);
  t.state = kIdle;
  q.complete(tag, (int)t.len);
  reply_done(q, nq);
}

void nbd_data_done(QueueThread &q, unsigned tag, int res) {
  NbdQueue &nq = queue(q);
  NbdTag &t = tag_of(q, tag);
  if (t.state == kReceiving) {
    if (!nq.up || nq.broken) {
      drained_old(q, nq, (unsigned)-1, tag);
      return;
    }
    nq.conn_ops--;
    if (res < 0) {
      t.state = kQueued;  // to be sent again, or failed
      connection_lost(q, nq, std::string("receiving read data: ") + strerror(-res));
      return;
    }
    q.count(kCntBytesReceived, t.len);
    t.state = kIdle;
    q.complete(tag, (int)t.len);
    reply_done(q, nq);
    return;
  }
  // a write's header and data went out
  sent(q, nq, tag, res, nq.broken ? (unsigned)-1 : nq.conn);
}

// No reply for too long: the server is stuck; treat the connection as lost.
void on_tick(QueueThread &q, NbdQueue &nq) {
  NbdDevice &d = device(q);
  if (nq.up && d.io_timeout_ms > 0) {
    const uint64_t now = now_ms();
    for (unsigned tag = q.worker(); tag < q.config().depth; tag += q.config().threads_per_queue) {
      NbdTag &t = tag_of(q, tag);
      if ((t.state == kAwaiting || t.state == kSending || t.state == kReceiving) && now - t.sent_ms > d.io_timeout_ms) {
        connection_lost(q, nq, "no reply to a request within " + std::to_string(d.io_timeout_ms / 1000) + " s");
        break;
      }
    }
  }
  arm_timer(q, nq);
}

void nbd_io_done(QueueThread &q, const TargetCqe &c) {
  NbdQueue &nq = queue(q);
  switch (c.op) {
    case kOpSendBatch:
      batch_sent(q, nq, c.res, c.sub);
      return;
    case kOpRecvReply:
      if (drained_old(q, nq, c.sub, kNoTag)) return;
      nq.conn_ops--;
      nq.recv_armed = false;
      if (nq.bulk_armed)
        on_bulk(q, nq, c.res);
      else
        on_reply(q, nq, c.res);
      return;
    case kOpRecvData:
      if (drained_old(q, nq, c.sub, c.tag)) return;
      nq.conn_ops--;
      on_bulk_data(q, nq, c.tag, c.res);
      return;
    case kOpTimer:
      on_tick(q, nq);
      return;
    default:
      return;
  }
}

// The reconnect thread made a connection (or gave up).
void nbd_handle_event(QueueThread &q) {
  NbdQueue &nq = queue(q);
  if (nq.old_ops == 0) resume(q, nq);
}

}  // namespace

extern const TargetOps nbd_target = {
    "nbd",
    // the bytes go out of the tag's buffer or the request's pages; user copy would need a copy
    // before every send, in the chain: not offered
    {mode_bit(DataMode::Copy) | kZeroCopyModes, "nbd sends from the tag's buffer or the request's own pages (copy or -z)",
     /*flush*/ true, /*discard*/ true, /*write_zeroes*/ true, /*fua*/ true},
    nbd_init,
    nbd_deinit,
    nbd_queue_io,
    nbd_io_done,
    nbd_init_queue,
    nbd_deinit_queue,
    nbd_data_done,
    nbd_handle_event,
    nbd_pass_done,
    nbd_probe,
    kCounters,
};

}  // namespace ublk
