// JavaScript face of the control plane: argument conversion and promises around ctrl.cc.
#include <napi.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>

#include "ctrl.h"
#include "promise_worker.h"

namespace ublk {

namespace {

uint32_t u32_arg(const Napi::CallbackInfo &info, size_t i, const char *what) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    Napi::TypeError::New(info.Env(), std::string(what) + " must be a number").ThrowAsJavaScriptException();
    return 0;
  }
  return info[i].As<Napi::Number>().Uint32Value();
}

uint64_t u64_of(Napi::Value v) {
  if (v.IsBigInt()) {
    bool lossless;
    return v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  if (v.IsNumber()) return (uint64_t)v.As<Napi::Number>().Int64Value();
  return 0;
}

uint32_t u32_of(Napi::Object o, const char *key) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : 0;
}

Napi::Object dev_info_to_js(Napi::Env env, const ctrl_dev_info &d) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("nrHwQueues", d.nr_hw_queues);
  o.Set("queueDepth", d.queue_depth);
  o.Set("state", d.state);
  o.Set("maxIoBufBytes", d.max_io_buf_bytes);
  o.Set("devId", d.dev_id);
  o.Set("ublksrvPid", d.ublksrv_pid);
  o.Set("flags", Napi::BigInt::New(env, (uint64_t)d.flags));
  o.Set("ublksrvFlags", Napi::BigInt::New(env, (uint64_t)d.ublksrv_flags));
  o.Set("ownerUid", d.owner_uid);
  o.Set("ownerGid", d.owner_gid);
  return o;
}

Napi::Object params_to_js(Napi::Env env, const params &p) {
  Napi::Object o = Napi::Object::New(env);
  Napi::Object b = Napi::Object::New(env);
  b.Set("attrs", p.basic.attrs);
  b.Set("logicalBsShift", p.basic.logical_bs_shift);
  b.Set("physicalBsShift", p.basic.physical_bs_shift);
  b.Set("ioOptShift", p.basic.io_opt_shift);
  b.Set("ioMinShift", p.basic.io_min_shift);
  b.Set("maxSectors", p.basic.max_sectors);
  b.Set("chunkSectors", p.basic.chunk_sectors);
  b.Set("devSectors", Napi::BigInt::New(env, (uint64_t)p.basic.dev_sectors));
  b.Set("virtBoundaryMask", Napi::BigInt::New(env, (uint64_t)p.basic.virt_boundary_mask));
  o.Set("basic", b);
  if (p.types & kParamDiscard) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("discardAlignment", p.discard.discard_alignment);
    d.Set("discardGranularity", p.discard.discard_granularity);
    d.Set("maxDiscardSectors", p.discard.max_discard_sectors);
    d.Set("maxWriteZeroesSectors", p.discard.max_write_zeroes_sectors);
    d.Set("maxDiscardSegments", p.discard.max_discard_segments);
    o.Set("discard", d);
  }
  if (p.types & kParamDevt) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("charMajor", p.devt.char_major);
    d.Set("charMinor", p.devt.char_minor);
    d.Set("diskMajor", p.devt.disk_major);
    d.Set("diskMinor", p.devt.disk_minor);
    o.Set("devt", d);
  }
  if (p.types & kParamDmaAlign) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("alignment", p.dma.alignment);
    o.Set("dma", d);
  }
  if (p.types & kParamSegment) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("segBoundaryMask", Napi::BigInt::New(env, (uint64_t)p.seg.seg_boundary_mask));
    d.Set("maxSegmentSize", p.seg.max_segment_size);
    d.Set("maxSegments", p.seg.max_segments);
    o.Set("seg", d);
  }
  return o;
}

// Which members are present decides `types`; devt is never sent (the kernel owns it).
params params_from_js(Napi::Object o) {
  params p;
  std::memset(&p, 0, sizeof(p));
  p.len = sizeof(p);
  p.types = kParamBasic;
  Napi::Object b = o.Get("basic").As<Napi::Object>();
  p.basic.attrs = u32_of(b, "attrs");
  p.basic.logical_bs_shift = (__u8)u32_of(b, "logicalBsShift");
  p.basic.physical_bs_shift = (__u8)u32_of(b, "physicalBsShift");
  p.basic.io_opt_shift = (__u8)u32_of(b, "ioOptShift");
  p.basic.io_min_shift = (__u8)u32_of(b, "ioMinShift");
  p.basic.max_sectors = u32_of(b, "maxSectors");
  p.basic.chunk_sectors = u32_of(b, "chunkSectors");
  p.basic.dev_sectors = u64_of(b.Get("devSectors"));
  p.basic.virt_boundary_mask = u64_of(b.Get("virtBoundaryMask"));
  if (o.Get("discard").IsObject()) {
    Napi::Object d = o.Get("discard").As<Napi::Object>();
    p.types |= kParamDiscard;
    p.discard.discard_alignment = u32_of(d, "discardAlignment");
    p.discard.discard_granularity = u32_of(d, "discardGranularity");
    p.discard.max_discard_sectors = u32_of(d, "maxDiscardSectors");
    p.discard.max_write_zeroes_sectors = u32_of(d, "maxWriteZeroesSectors");
    p.discard.max_discard_segments = (__u16)u32_of(d, "maxDiscardSegments");
  }
  if (o.Get("dma").IsObject()) {
    p.types |= kParamDmaAlign;
    p.dma.alignment = u32_of(o.Get("dma").As<Napi::Object>(), "alignment");
  }
  if (o.Get("seg").IsObject()) {
    Napi::Object s = o.Get("seg").As<Napi::Object>();
    p.types |= kParamSegment;
    p.seg.seg_boundary_mask = u64_of(s.Get("segBoundaryMask"));
    p.seg.max_segment_size = u32_of(s, "maxSegmentSize");
    p.seg.max_segments = (__u16)u32_of(s, "maxSegments");
  }
  return p;
}

Napi::Value GetFeatures(const Napi::CallbackInfo &info) {
  auto out = std::make_shared<__u64>(0);
  return PromiseWorker::Run(
      info.Env(), "GET_FEATURES", [out] { return ctrl_get_features(out.get()); },
      [out](Napi::Env env) { return Napi::BigInt::New(env, (uint64_t)*out); });
}

Napi::Value AddDev(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    Napi::TypeError::New(env, "addDev(request) needs an object").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object r = info[0].As<Napi::Object>();
  auto d = std::make_shared<ctrl_dev_info>();
  std::memset(d.get(), 0, sizeof(*d));
  d->dev_id = (__u32)r.Get("devId").As<Napi::Number>().Int32Value();  // -1 -> 0xffffffff: any id
  d->nr_hw_queues = (__u16)u32_of(r, "nrHwQueues");
  d->queue_depth = (__u16)u32_of(r, "queueDepth");
  d->max_io_buf_bytes = u32_of(r, "maxIoBufBytes");
  d->flags = u64_of(r.Get("flags"));
  d->ublksrv_flags = u64_of(r.Get("ublksrvFlags"));
  return PromiseWorker::Run(
      env, "ADD_DEV", [d] { return ctrl_add_dev(d.get()); },
      [d](Napi::Env env) { return dev_info_to_js(env, *d); });
}

Napi::Value DelDev(const Napi::CallbackInfo &info) {
  uint32_t id = u32_arg(info, 0, "devId");
  return PromiseWorker::Run(info.Env(), "DEL_DEV", [id] { return ctrl_del_dev(id); });
}

Napi::Value StartDev(const Napi::CallbackInfo &info) {
  uint32_t id = u32_arg(info, 0, "devId");
  int32_t pid = (int32_t)u32_arg(info, 1, "pid");
  return PromiseWorker::Run(info.Env(), "START_DEV", [id, pid] { return ctrl_start_dev(id, pid); });
}

Napi::Value StopDev(const Napi::CallbackInfo &info) {
  uint32_t id = u32_arg(info, 0, "devId");
  return PromiseWorker::Run(info.Env(), "STOP_DEV", [id] { return ctrl_stop_dev(id); });
}

Napi::Value SetParams(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t id = u32_arg(info, 0, "devId");
  if (info.Length() < 2 || !info[1].IsObject() || !info[1].As<Napi::Object>().Get("basic").IsObject()) {
    Napi::TypeError::New(env, "setParams(devId, params) needs params.basic").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto p = std::make_shared<params>(params_from_js(info[1].As<Napi::Object>()));
  return PromiseWorker::Run(env, "SET_PARAMS", [id, p] { return ctrl_set_params(id, p.get()); });
}

Napi::Value GetParams(const Napi::CallbackInfo &info) {
  uint32_t id = u32_arg(info, 0, "devId");
  auto p = std::make_shared<params>();
  return PromiseWorker::Run(
      info.Env(), "GET_PARAMS", [id, p] { return ctrl_get_params(id, p.get()); },
      [p](Napi::Env env) { return params_to_js(env, *p); });
}

Napi::Value GetDevInfo(const Napi::CallbackInfo &info) {
  uint32_t id = u32_arg(info, 0, "devId");
  auto d = std::make_shared<ctrl_dev_info>();
  return PromiseWorker::Run(
      info.Env(), "GET_DEV_INFO", [id, d] { return ctrl_get_dev_info(id, d.get()); },
      [d](Napi::Env env) { return dev_info_to_js(env, *d); });
}

Napi::Value StartUserRecovery(const Napi::CallbackInfo &info) {
  uint32_t id = u32_arg(info, 0, "devId");
  return PromiseWorker::Run(info.Env(), "START_USER_RECOVERY",
                            [id] { return ctrl_start_user_recovery(id); });
}

Napi::Value EndUserRecovery(const Napi::CallbackInfo &info) {
  uint32_t id = u32_arg(info, 0, "devId");
  int32_t pid = (int32_t)u32_arg(info, 1, "pid");
  return PromiseWorker::Run(info.Env(), "END_USER_RECOVERY",
                            [id, pid] { return ctrl_end_user_recovery(id, pid); });
}

Napi::Value QuiesceDev(const Napi::CallbackInfo &info) {
  uint32_t id = u32_arg(info, 0, "devId");
  uint32_t timeout_ms = u32_arg(info, 1, "timeoutMs");
  return PromiseWorker::Run(info.Env(), "QUIESCE_DEV",
                            [id, timeout_ms] { return ctrl_quiesce_dev(id, timeout_ms); });
}

// The disk's I/O scheduler, through /dev/ublkbN's sysfs queue directory. Off the main thread: the
// kernel freezes the queue to switch, waiting for requests in flight (udev's first reads).
Napi::Value SetIoScheduler(const Napi::CallbackInfo &info) {
  uint32_t id = u32_arg(info, 0, "devId");
  if (info.Length() < 2 || !info[1].IsString()) {
    Napi::TypeError::New(info.Env(), "scheduler must be a string").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  std::string name = info[1].As<Napi::String>().Utf8Value();
  std::string path = "/sys/block/ublkb" + std::to_string(id) + "/queue/scheduler";
  return PromiseWorker::Run(info.Env(), "set I/O scheduler", [path, name] {
    int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t n = write(fd, name.data(), name.size());
    int err = n < 0 ? errno : 0;
    close(fd);
    return -err;
  });
}

}  // namespace

// Whether the driver's control device exists (the driver is loaded): the CLI checks it first so
// that a missing driver gets one clear message before anything else.
Napi::Value ControlPresent(const Napi::CallbackInfo &info) {
  return Napi::Boolean::New(info.Env(), access(kControlPath, F_OK) == 0);
}

void init_ctrl_bindings(Napi::Env env, Napi::Object exports) {
  exports.Set("controlPresent", Napi::Function::New(env, ControlPresent, "controlPresent"));
  exports.Set("getFeatures", Napi::Function::New(env, GetFeatures, "getFeatures"));
  exports.Set("addDev", Napi::Function::New(env, AddDev, "addDev"));
  exports.Set("delDev", Napi::Function::New(env, DelDev, "delDev"));
  exports.Set("startDev", Napi::Function::New(env, StartDev, "startDev"));
  exports.Set("stopDev", Napi::Function::New(env, StopDev, "stopDev"));
  exports.Set("setParams", Napi::Function::New(env, SetParams, "setParams"));
  exports.Set("getParams", Napi::Function::New(env, GetParams, "getParams"));
  exports.Set("getDevInfo", Napi::Function::New(env, GetDevInfo, "getDevInfo"));
  exports.Set("startUserRecovery", Napi::Function::New(env, StartUserRecovery, "startUserRecovery"));
  exports.Set("endUserRecovery", Napi::Function::New(env, EndUserRecovery, "endUserRecovery"));
  exports.Set("quiesceDev", Napi::Function::New(env, QuiesceDev, "quiesceDev"));
  exports.Set("setIoScheduler", Napi::Function::New(env, SetIoScheduler, "setIoScheduler"));
}

}  // namespace ublk
