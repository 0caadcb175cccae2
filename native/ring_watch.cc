#include "ring_watch.h"

namespace ublk {

namespace {

// libuv frees a handle only after its close callback: the handles live on the heap, apart from
// the watch, and know nothing of the queue once stopped.
class RingWatch : public QueueThread::Watch {
 public:
  // 0 or a libuv error (the watch then holds nothing)
  int start(uv_loop_t *loop, QueueThread &q) {
    poll_ = new uv_poll_t;
    poll_->data = &q;
    int ret = uv_poll_init(loop, poll_, q.ring_fd());
    if (ret < 0) {
      delete poll_;
      poll_ = nullptr;
      return ret;
    }
    timer_ = new uv_timer_t;
    timer_->data = &q;
    uv_timer_init(loop, timer_);
    uv_poll_start(poll_, UV_READABLE, [](uv_poll_t *h, int, int) { static_cast<QueueThread *>(h->data)->pass_here(); });
    uv_timer_start(
        timer_,
        [](uv_timer_t *h) {
          auto *q = static_cast<QueueThread *>(h->data);
          if (q->stop_requested()) q->pass_here();
        },
        100, 100);
    uv_unref(reinterpret_cast<uv_handle_t *>(timer_));  // the server's own handle keeps the loop alive
    return 0;
  }
  ~RingWatch() override { stop(); }

  void stop() override {
    if (!poll_) return;
    uv_poll_stop(poll_);
    uv_timer_stop(timer_);
    uv_close(reinterpret_cast<uv_handle_t *>(poll_), [](uv_handle_t *h) { delete reinterpret_cast<uv_poll_t *>(h); });
    uv_close(reinterpret_cast<uv_handle_t *>(timer_), [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
    poll_ = nullptr;
    timer_ = nullptr;
  }

 private:
  uv_poll_t *poll_ = nullptr;
  uv_timer_t *timer_ = nullptr;
};

}  // namespace

std::unique_ptr<QueueThread::Watch> watch_ring(uv_loop_t *loop, QueueThread &q) {
  std::unique_ptr<RingWatch> w(new RingWatch());
  if (w->start(loop, q) < 0) return nullptr;
  return w;
}

}  // namespace ublk
