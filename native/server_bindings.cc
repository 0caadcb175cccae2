// JavaScript face of one device's native server (NativeServer in binding-types.ts).
//
// Queue threads never call JavaScript on the I/O path. The only calls are rare events (a queue
// ended) delivered through a ThreadSafeFunction, which also keeps Node's event loop alive while
// the device is served. A target served on the event loop (the js target) gets its signal by a
// direct call instead: its queues run on this thread.
#include <napi.h>

#include <cmath>
#include <memory>

#include "device.h"
#include "promise_worker.h"
#include "ring_watch.h"

namespace ublk {

namespace {

struct ExitEvent {
  unsigned q_id;
  int err;
  std::string msg;
};

struct ReportEvent {
  unsigned q_id;
  std::string level;
  std::string msg;
};

// ServeOptions.target.options -> TargetArgs: every value as it came, for the target's init to read.
bool to_target_args(Napi::Value v, TargetArgs *out, std::string &why) {
  if (v.IsUndefined()) return true;
  if (!v.IsObject() || v.IsArray()) {
    why = "target.options must be an object";
    return false;
  }
  Napi::Object o = v.As<Napi::Object>();
  Napi::Array keys = o.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); i++) {
    std::string k = keys.Get(i).ToString().Utf8Value();
    Napi::Value x = o.Get(k);
    TargetArgs::Value val;
    if (x.IsString()) {
      val.type = TargetArgs::Value::String;
      val.s = x.As<Napi::String>().Utf8Value();
    } else if (x.IsNumber()) {
      val.type = TargetArgs::Value::Number;
      val.n = x.As<Napi::Number>().DoubleValue();
    } else if (x.IsBoolean()) {
      val.type = TargetArgs::Value::Bool;
      val.b = x.As<Napi::Boolean>().Value();
    } else if (x.IsArray()) {
      val.type = TargetArgs::Value::Numbers;
      Napi::Array a = x.As<Napi::Array>();
      for (uint32_t j = 0; j < a.Length(); j++) {
        Napi::Value e = a.Get(j);
        if (!e.IsNumber()) {
          why = "target option " + k + " must hold numbers only";
          return false;
        }
        val.list.push_back(e.As<Napi::Number>().DoubleValue());
      }
    } else if (x.IsUndefined()) {
      continue;
    } else {
      why = "target option " + k + " must be a string, number, boolean or list of numbers";
      return false;
    }
    out->set(k, std::move(val));
  }
  return true;
}

class NativeServer : public Napi::ObjectWrap<NativeServer> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeServer",
                       {InstanceMethod("start", &NativeServer::Start), InstanceMethod("stop", &NativeServer::Stop),
                        InstanceMethod("stats", &NativeServer::Stats),
                        InstanceMethod("onQueueExit", &NativeServer::OnQueueExit),
                        InstanceMethod("onTargetReport", &NativeServer::OnTargetReport),
                        InstanceMethod("onTargetSignal", &NativeServer::OnTargetSignal),
                        InstanceMethod("memory", &NativeServer::Memory),
                        InstanceMethod("wake", &NativeServer::Wake)});
  }

  explicit NativeServer(const Napi::CallbackInfo &info) : Napi::ObjectWrap<NativeServer>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) {
      Napi::TypeError::New(env, "createServer(options) needs an object").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    auto num = [&](const char *k, unsigned dflt) {
      Napi::Value v = o.Get(k);
      return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : dflt;
    };
    auto str = [&](const char *k) {
      Napi::Value v = o.Get(k);
      return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
    };
    auto flag = [&](const char *k, bool dflt) {
      Napi::Value v = o.Get(k);
      return v.IsBoolean() ? v.As<Napi::Boolean>().Value() : dflt;
    };

    DeviceConfig cfg;
    cfg.dev_id = num("devId", 0);
    cfg.nr_queues = num("nrQueues", 1);
    cfg.depth = num("depth", 128);
    cfg.max_io_buf_bytes = num("maxIoBufBytes", 512 * 1024);
    std::string mode = str("mode");
    if (!parse_data_mode(mode.empty() ? "copy" : mode, &cfg.mode)) {
      Napi::TypeError::New(env, "unknown data mode '" + mode + "'").ThrowAsJavaScriptException();
      return;
    }
    cfg.batch = flag("batchIo", false);
    cfg.read_only = flag("readOnly", false);
    cfg.threads_per_queue = num("threadsPerQueue", 1);
    cfg.busy_poll_us = num("busyPollUs", 0);
    std::string aff = str("affinity");
    if (aff == "cpu") cfg.affinity = Affinity::OneCpu;
    else if (aff == "queue") cfg.affinity = Affinity::Queue;
    else if (aff.empty() || aff == "none") cfg.affinity = Affinity::None;
    else {
      Napi::TypeError::New(env, "unknown affinity '" + aff + "' (cpu, queue or none)").ThrowAsJavaScriptException();
      return;
    }
    if (cfg.nr_queues < 1 || cfg.nr_queues > kMaxNrQueues || cfg.depth < 1 || cfg.depth > kMaxQueueDepth ||
        cfg.max_io_buf_bytes < 4096 || cfg.max_io_buf_bytes > (1u << kIoBufBits)) {
      Napi::RangeError::New(env, "queues, depth or max I/O size out of range").ThrowAsJavaScriptException();
      return;
    }
    if (cfg.threads_per_queue < 1 || cfg.threads_per_queue > cfg.depth || (cfg.batch && cfg.threads_per_queue > 1)) {
      Napi::RangeError::New(env, "threadsPerQueue must be 1..depth, and 1 with batchIo").ThrowAsJavaScriptException();
      return;
    }
    if (cfg.busy_poll_us > 100 * 1000) {  // LIMITS.maxBusyPollUs (shared/add-options.ts)
      Napi::RangeError::New(env, "busyPollUs must be 0..100000").ThrowAsJavaScriptException();
      return;
    }
    Napi::Value faults = o.Get("testFaults");
    if (faults.IsObject()) {
      Napi::Value every = faults.As<Napi::Object>().Get("autoBufMissEvery");
      if (every.IsNumber()) cfg.faults.auto_buf_miss_every = every.As<Napi::Number>().Uint32Value();
    }

    // The target: its name picks the operations table, its options go to its init as they are.
    Napi::Value t = o.Get("target");
    if (!t.IsObject()) {
      Napi::TypeError::New(env, "createServer: target must be { name, options }").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object to = t.As<Napi::Object>();
    std::string name = to.Get("name").IsString() ? to.Get("name").As<Napi::String>().Utf8Value() : "";
    cfg.target = find_target(name);
    if (!cfg.target) {
      Napi::TypeError::New(env, "unknown target '" + name + "'").ThrowAsJavaScriptException();
      return;
    }
    if (!(cfg.target->caps.data_modes & mode_bit(cfg.mode))) {
      std::string why = cfg.target->caps.why_no_zero_copy ? cfg.target->caps.why_no_zero_copy : "not supported";
      Napi::TypeError::New(env, "the " + name + " target cannot serve data mode " + data_mode_name(cfg.mode) + ": " + why)
          .ThrowAsJavaScriptException();
      return;
    }
    TargetArgs args;
    std::string why;
    if (!to_target_args(to.Get("options"), &args, why)) {
      Napi::TypeError::New(env, why).ThrowAsJavaScriptException();
      return;
    }
    device_ = std::make_shared<Device>(cfg, args);
  }

  ~NativeServer() override {
    if (device_) {
      device_->request_stop(true);
      device_->join_and_close();
    }
  }

 private:
  Napi::Value Start(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (started_) {
      Napi::Error::New(env, "server already started").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    started_ = true;
    // Hold this object and the event loop while queue threads may still report.
    self_ref_ = Napi::Persistent(Value());
    tsfn_ = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo &) {}),
                                          "ublk-queue-exit", 0, 1);
    tsfn_live_ = true;
    auto dev = device_;
    auto tids = std::make_shared<std::vector<int>>();
    auto why = std::make_shared<std::string>();
    Napi::ThreadSafeFunction tsfn = tsfn_;
    NativeServer *self = this;
    Device::Events events;
    events.exited = [tsfn, self](unsigned q, int err, const std::string &msg) mutable {
      auto *ev = new ExitEvent{q, err, msg};
      tsfn.BlockingCall(ev, [self](Napi::Env env, Napi::Function, ExitEvent *e) {
        std::unique_ptr<ExitEvent> owned(e);
        if (self->exit_cb_.IsEmpty()) return;
        Napi::Object o = Napi::Object::New(env);
        o.Set("queueId", e->q_id);
        o.Set("error", e->err);
        o.Set("message", e->msg);
        self->exit_cb_.Call({o});
      });
    };
    // A target's log lines: rare, and a queue thread must not wait for JavaScript to take them.
    events.report = [tsfn, self](unsigned q, const char *level, const std::string &msg) mutable {
      auto *ev = new ReportEvent{q, level, msg};
      napi_status st = tsfn.NonBlockingCall(ev, [self](Napi::Env env, Napi::Function, ReportEvent *e) {
        std::unique_ptr<ReportEvent> owned(e);
        if (self->report_cb_.IsEmpty()) return;
        Napi::Object o = Napi::Object::New(env);
        o.Set("queueId", e->q_id);
        o.Set("level", e->level);
        o.Set("message", e->msg);
        self->report_cb_.Call({o});
      });
      if (st != napi_ok) delete ev;
    };
    // A target's signal (its work for JavaScript, once per pass): the value rides in the call's data
    // pointer, so nothing is allocated for it on the queue thread.
    if (dev->served_here()) {
      // On this thread, from a pass of the ring (ring_watch.cc): a callback scope of its own, so
      // the promises the handlers settle at once run (and commit) before the pass ends.
      signal_ctx_ = std::make_unique<Napi::AsyncContext>(env, "ublk-target-signal");
      events.signal = [self](unsigned index, uint32_t value) {
        if (self->signal_cb_.IsEmpty()) return;
        Napi::Env env = self->Env();
        Napi::HandleScope scope(env);
        self->signal_cb_.MakeCallback(self->Value(), {Napi::Number::New(env, index), Napi::Number::New(env, value)},
                                      *self->signal_ctx_);
        // no JavaScript below us to take it: Node's uncaught-exception handling, as for a TSFN call
        if (env.IsExceptionPending()) napi_fatal_exception(env, env.GetAndClearPendingException().Value());
      };
    } else {
      events.signal = [tsfn, self](unsigned index, uint32_t value) mutable {
        void *data = reinterpret_cast<void *>(((uintptr_t)index << 32) | value);
        tsfn.NonBlockingCall(data, [self](Napi::Env env, Napi::Function, void *d) {
          if (self->signal_cb_.IsEmpty()) return;
          const uintptr_t v = reinterpret_cast<uintptr_t>(d);
          self->signal_cb_.Call({Napi::Number::New(env, (double)(v >> 32)), Napi::Number::New(env, (double)(v & 0xffffffffu))});
        });
      };
    }
    auto *w = new StartWorker(env, dev, tids, why, events, this);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

  class StartWorker : public Napi::AsyncWorker {
   public:
    StartWorker(Napi::Env env, std::shared_ptr<Device> dev, std::shared_ptr<std::vector<int>> tids,
                std::shared_ptr<std::string> why, Device::Events events, NativeServer *owner)
        : Napi::AsyncWorker(env, "ublk-start"),
          d_(Napi::Promise::Deferred::New(env)),
          dev_(dev), tids_(tids), why_(why), events_(std::move(events)), owner_(owner) {}
    Napi::Promise Promise() { return d_.Promise(); }

   protected:
    void Execute() override { res_ = dev_->start(*tids_, *why_, events_); }
    void OnOK() override {
      Napi::Env env = Env();
      if (res_ == 0 && dev_->served_here()) {
        uv_loop_t *loop = nullptr;
        napi_get_uv_event_loop(env, &loop);
        res_ = dev_->start_here(*tids_, *why_, [loop](QueueThread &q) { return watch_ring(loop, q); });
      }
      if (res_ < 0) {
        owner_->ReleaseLoop();
        d_.Reject(make_error(env, "start queues", -res_, *why_).Value());
        return;
      }
      Napi::Array a = Napi::Array::New(env, tids_->size());
      for (size_t i = 0; i < tids_->size(); i++) a.Set(i, (*tids_)[i]);
      d_.Resolve(a);
    }

   private:
    Napi::Promise::Deferred d_;
    std::shared_ptr<Device> dev_;
    std::shared_ptr<std::vector<int>> tids_;
    std::shared_ptr<std::string> why_;
    Device::Events events_;
    NativeServer *owner_;
    int res_ = 0;
  };

  // Lets Node exit and this object be collected once no queue thread can report any more.
  void ReleaseLoop() {
    if (tsfn_live_) {
      tsfn_.Release();
      tsfn_live_ = false;
    }
    if (!self_ref_.IsEmpty()) self_ref_.Reset();
  }

  Napi::Value Stop(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    bool force = info.Length() > 0 && info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value();
    auto dev = device_;
    auto *w = new StopWorker(env, dev, force, this);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  }

  class StopWorker : public Napi::AsyncWorker {
   public:
    StopWorker(Napi::Env env, std::shared_ptr<Device> dev, bool force, NativeServer *owner)
        : Napi::AsyncWorker(env, "ublk-stop"), d_(Napi::Promise::Deferred::New(env)), dev_(dev), force_(force),
          owner_(owner) {}
    Napi::Promise Promise() { return d_.Promise(); }

   protected:
    void Execute() override {
      dev_->request_stop(force_);
      dev_->join_and_close();
    }
    void OnOK() override {
      // Queue-exit events already queued run before this (same thread, FIFO), then we let go.
      owner_->ReleaseLoop();
      d_.Resolve(Env().Undefined());
    }

   private:
    Napi::Promise::Deferred d_;
    std::shared_ptr<Device> dev_;
    bool force_;
    NativeServer *owner_;
  };

  // One entry per queue; a queue served by several threads reports the sum of their counters.
  Napi::Value Stats(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Napi::Array out;
    device_->with_queues([&](const std::vector<std::unique_ptr<QueueThread>> &qs) { out = StatsOf(env, qs); });
    return out;
  }

  Napi::Array StatsOf(Napi::Env env, const std::vector<std::unique_ptr<QueueThread>> &qs) {
    const unsigned per_queue = device_->config().threads_per_queue;
    const size_t nq = qs.size() / per_queue;
    Napi::Array out = Napi::Array::New(env, nq);
    for (size_t i = 0; i < nq; i++) {
      const size_t first = i * per_queue;  // Device::start creates a queue's threads together
      CounterTotals c;
      for (size_t w = 0; w < per_queue; w++) c.add(qs[first + w]->counters());
      Napi::Object o = Napi::Object::New(env);
      o.Set("queueId", qs[first]->queue_id());
      o.Set("tid", qs[first]->tid());
      Napi::Object ops = Napi::Object::New(env), bytes = Napi::Object::New(env), errors = Napi::Object::New(env);
      for (unsigned k = 0; k < kNumStatOps; k++) {
        ops.Set(stat_op_name(k), (double)c.ops[k]);
        bytes.Set(stat_op_name(k), (double)c.bytes[k]);
        errors.Set(stat_op_name(k), (double)c.errors[k]);
      }
      o.Set("ops", ops);
      o.Set("bytes", bytes);
      o.Set("errors", errors);
      o.Set("inflight", (double)c.inflight);
      Napi::Array bounds = Napi::Array::New(env, kNumLatencyBuckets);
      Napi::Array counts = Napi::Array::New(env, kNumLatencyBuckets);
      for (unsigned b = 0; b < kNumLatencyBuckets; b++) {
        bounds.Set(b, b + 1 < kNumLatencyBuckets ? Napi::Number::New(env, kLatencyBuckets[b])
                                                 : Napi::Number::New(env, INFINITY));
        counts.Set(b, (double)c.latency[b]);
      }
      o.Set("latencyBucketsUs", bounds);
      o.Set("latencyCounts", counts);
      o.Set("latencySumUs", (double)c.latency_sum_us);
      o.Set("jsCalls", (double)c.js_calls);
      o.Set("zcFallbackRegs", (double)c.zc_fallback_regs);
      Napi::Object tc = Napi::Object::New(env);
      const char *const *names = device_->config().target->counters;
      for (unsigned k = 0; names && names[k] && k < kMaxTargetCounters; k++) tc.Set(names[k], (double)c.target[k]);
      o.Set("target", tc);
      out.Set(i, o);
    }
    return out;
  }

  Napi::Value OnTargetSignal(const Napi::CallbackInfo &info) { return SetCallback(info, "onTargetSignal", signal_cb_); }

  // onQueueExit / onTargetReport / onTargetSignal(callback): keeps the callback for the events
  static Napi::Value SetCallback(const Napi::CallbackInfo &info, const char *name, Napi::FunctionReference &ref) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) {
      Napi::TypeError::New(env, std::string(name) + "(callback) needs a function").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    ref = Napi::Persistent(info[0].As<Napi::Function>());
    return env.Undefined();
  }

  // The thread index a call names (a RangeError when it is not a number).
  bool ThreadIndex(const Napi::CallbackInfo &info, unsigned *index) {
    if (info.Length() < 1 || !info[0].IsNumber()) {
      Napi::RangeError::New(info.Env(), "no such queue thread").ThrowAsJavaScriptException();
      return false;
    }
    *index = info[0].As<Napi::Number>().Uint32Value();
    return true;
  }

  // memory(thread): what the thread shares with JavaScript, by name, as ArrayBuffers over the same
  // bytes; each keeps its region alive until it is collected.
  Napi::Value Memory(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    unsigned i;
    if (!ThreadIndex(info, &i)) return env.Undefined();
    std::vector<std::pair<std::string, std::shared_ptr<SharedRegion>>> shared;
    bool found = false;
    device_->with_queues([&](const std::vector<std::unique_ptr<QueueThread>> &qs) {
      if (i < qs.size()) shared = qs[i]->exposed(), found = true;
    });
    if (!found) {
      Napi::RangeError::New(env, "no such queue thread").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Object out = Napi::Object::New(env);
    for (auto &e : shared) {
      auto *hold = new std::shared_ptr<SharedRegion>(e.second);
      out.Set(e.first, Napi::ArrayBuffer::New(env, e.second->ptr, e.second->len,
                                              [](Napi::Env, void *, std::shared_ptr<SharedRegion> *h) { delete h; }, hold));
    }
    return out;
  }

  // wake(thread): the thread's target gets handle_event (work JavaScript finished: completions).
  // A queue that ended (the device stopped) has nothing to do with it: no error.
  Napi::Value Wake(const Napi::CallbackInfo &info) {
    unsigned i;
    if (!ThreadIndex(info, &i)) return info.Env().Undefined();
    device_->with_queues([&](const std::vector<std::unique_ptr<QueueThread>> &qs) {
      if (i < qs.size()) qs[i]->wake_target();
    });
    return info.Env().Undefined();
  }

  Napi::Value OnTargetReport(const Napi::CallbackInfo &info) { return SetCallback(info, "onTargetReport", report_cb_); }

  Napi::Value OnQueueExit(const Napi::CallbackInfo &info) { return SetCallback(info, "onQueueExit", exit_cb_); }

  std::shared_ptr<Device> device_;
  bool started_ = false;
  Napi::ThreadSafeFunction tsfn_;
  bool tsfn_live_ = false;
  Napi::ObjectReference self_ref_;
  Napi::FunctionReference exit_cb_;
  Napi::FunctionReference report_cb_;
  Napi::FunctionReference signal_cb_;
  std::unique_ptr<Napi::AsyncContext> signal_ctx_;
};

Napi::FunctionReference *g_server_ctor = nullptr;

Napi::Value CreateServer(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1) {
    Napi::TypeError::New(env, "createServer(options) needs an object").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return g_server_ctor->New({info[0]});
}

// probeTarget(name, options): what a target learns of its store before any device exists (a
// server's size and flags), off the main thread; resolves with the facts as parsed JSON.
Napi::Value ProbeTarget(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string name = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  const TargetOps *t = find_target(name);
  if (!t || !t->probe) {
    Napi::TypeError::New(env, "target '" + name + "' has no probe").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto args = std::make_shared<TargetArgs>();
  std::string why;
  if (!to_target_args(info.Length() > 1 ? info[1] : env.Undefined(), args.get(), why)) {
    Napi::TypeError::New(env, why).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto facts = std::make_shared<std::string>();
  auto detail = std::make_shared<std::string>();
  return PromiseWorker::Run(
      env, "probe " + name, [t, args, facts, detail]() { return t->probe(*args, *facts, *detail); },
      [facts](Napi::Env e) -> Napi::Value {
        Napi::Object json = e.Global().Get("JSON").As<Napi::Object>();
        return json.Get("parse").As<Napi::Function>().Call(json, {Napi::String::New(e, *facts)});
      },
      detail);
}

// What each target can serve (TargetCaps), for the TypeScript descriptors' own declarations to be
// checked against (test/unit/target-caps.test.ts).
Napi::Value Targets(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  auto all = all_targets();
  Napi::Array out = Napi::Array::New(env, all.size());
  for (size_t i = 0; i < all.size(); i++) {
    const TargetOps *t = all[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", t->name);
    Napi::Array modes = Napi::Array::New(env);
    for (DataMode m : {DataMode::Copy, DataMode::UserCopy, DataMode::ZcAuto, DataMode::ZcExplicit})
      if (t->caps.data_modes & mode_bit(m)) modes.Set(modes.Length(), data_mode_name(m));
    o.Set("dataModes", modes);
    o.Set("flush", t->caps.flush);
    o.Set("discard", t->caps.discard);
    o.Set("writeZeroes", t->caps.write_zeroes);
    o.Set("fua", t->caps.fua);
    out.Set(i, o);
  }
  return out;
}

}  // namespace

void init_server_bindings(Napi::Env env, Napi::Object exports) {
  g_server_ctor = new Napi::FunctionReference(Napi::Persistent(NativeServer::Init(env)));
  env.AddCleanupHook([] {
    delete g_server_ctor;
    g_server_ctor = nullptr;
  });
  exports.Set("createServer", Napi::Function::New(env, CreateServer, "createServer"));
  exports.Set("targets", Napi::Function::New(env, Targets, "targets"));
  exports.Set("probeTarget", Napi::Function::New(env, ProbeTarget, "probeTarget"));
}

}  // namespace ublk
