// Runs a blocking native call on a libuv worker thread and settles a promise with its outcome.
// For short, bounded work only (control commands, joining threads at stop); long-lived loops
// run on their own std::thread (see queue.cc).
#pragma once

#include <napi.h>

#include <functional>
#include <memory>
#include <string>

#include "errors.h"

namespace ublk {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<int()>;                     // returns >= 0 or -errno
  using Result = std::function<Napi::Value(Napi::Env)>;  // builds the resolved value

  // `detail`, filled by the work, is added to the error's message (what failed, and why).
  static Napi::Promise Run(Napi::Env env, std::string op, Work work, Result result = nullptr,
                           std::shared_ptr<std::string> detail = nullptr) {
    auto *w = new PromiseWorker(env, std::move(op), std::move(work), std::move(result));
    w->detail_ = std::move(detail);
    Napi::Promise p = w->deferred_.Promise();
    w->Queue();
    return p;
  }

 protected:
  void Execute() override { res_ = work_(); }
  void OnOK() override {
    Napi::Env env = Env();
    if (res_ < 0) {
      deferred_.Reject(make_error(env, op_, -res_, detail_ ? *detail_ : "").Value());
    } else {
      deferred_.Resolve(result_ ? result_(env) : env.Undefined());
    }
  }

 private:
  PromiseWorker(Napi::Env env, std::string op, Work work, Result result)
      : Napi::AsyncWorker(env, op.c_str()),
        deferred_(Napi::Promise::Deferred::New(env)),
        op_(std::move(op)),
        work_(std::move(work)),
        result_(std::move(result)) {}

  Napi::Promise::Deferred deferred_;
  std::string op_;
  Work work_;
  Result result_;
  std::shared_ptr<std::string> detail_;
  int res_ = 0;
};

}  // namespace ublk
