#include "ring_watch.h"

#include <array>

namespace ublk {

namespace {

// libuv frees a handle only after its close callback, so the handles live on the heap apart from
// the watch, and forget the queue once stopped (a callback already queued then does nothing).
struct Handles {
  QueueThread *q = nullptr;
  uv_poll_t poll;
  uv_timer_t timer;
  uv_idle_t idle;  // busy polling: a pass each turn of the loop, which then never sleeps
  int open = 0;    // handles not yet closed
};

Handles *of(uv_handle_t *h) { return static_cast<Handles *>(h->data); }

// After a pass: go on polling without sleeping while the queue asks for it (QueueThread::polling).
void after_pass(Handles *hs) {
  if (!hs->q) return;  // the pass ended the loop: the watch is stopped
  if (hs->q->polling()) uv_idle_start(&hs->idle, [](uv_idle_t *h) {
    Handles *s = of(reinterpret_cast<uv_handle_t *>(h));
    if (!s->q || !s->q->polling()) {
      uv_idle_stop(h);
      return;
    }
    s->q->pass_here();
  });
}

class RingWatch : public QueueThread::Watch {
 public:
  // 0 or a libuv error (the watch then holds nothing)
  int start(uv_loop_t *loop, QueueThread &q) {
    auto *hs = new Handles();
    hs->q = &q;
    int ret = uv_poll_init(loop, &hs->poll, q.ring_fd());
    if (ret < 0) {
      delete hs;
      return ret;
    }
    uv_timer_init(loop, &hs->timer);
    uv_idle_init(loop, &hs->idle);
    for (uv_handle_t *h : handles(hs)) h->data = hs;
    hs->open = 3;
    hs_ = hs;
    uv_poll_start(&hs->poll, UV_READABLE, [](uv_poll_t *h, int, int) {
      Handles *s = of(reinterpret_cast<uv_handle_t *>(h));
      if (!s->q) return;
      s->q->pass_here();
      after_pass(s);
    });
    uv_timer_start(
        &hs->timer,
        [](uv_timer_t *h) {
          Handles *s = of(reinterpret_cast<uv_handle_t *>(h));
          if (s->q && s->q->stop_requested()) s->q->pass_here();
        },
        100, 100);
    uv_unref(reinterpret_cast<uv_handle_t *>(&hs->timer));  // the server's own handle keeps the loop alive
    uv_unref(reinterpret_cast<uv_handle_t *>(&hs->idle));
    return 0;
  }
  ~RingWatch() override { stop(); }

  void stop() override {
    Handles *hs = hs_;
    if (!hs) return;
    hs_ = nullptr;
    hs->q = nullptr;
    uv_poll_stop(&hs->poll);
    uv_timer_stop(&hs->timer);
    uv_idle_stop(&hs->idle);
    for (uv_handle_t *h : handles(hs)) {
      uv_close(h, [](uv_handle_t *c) {
        Handles *s = of(c);
        if (--s->open == 0) delete s;
      });
    }
  }

 private:
  static std::array<uv_handle_t *, 3> handles(Handles *hs) {
    return {reinterpret_cast<uv_handle_t *>(&hs->poll), reinterpret_cast<uv_handle_t *>(&hs->timer),
            reinterpret_cast<uv_handle_t *>(&hs->idle)};
  }
  Handles *hs_ = nullptr;
};

}  // namespace

std::unique_ptr<QueueThread::Watch> watch_ring(uv_loop_t *loop, QueueThread &q) {
  std::unique_ptr<RingWatch> w(new RingWatch());
  if (w->start(loop, q) < 0) return nullptr;
  return w;
}

}  // namespace ublk
