// ublk-ts's own description of the ublk driver's user ABI (include/uapi/linux/ublk_cmd.h).
//
// Why our own header: Debian bookworm's linux-libc-dev ships the 6.1 header, which lacks zero
// copy, AUTO_BUF_REG, user copy and most feature bits. Everything here is written from the
// kernel's documented layout; the static_asserts at the bottom pin every size and offset so a
// mistake fails the build instead of corrupting a command.
#pragma once

#include <linux/types.h>
#include <sys/ioctl.h>
#include <cstddef>
#include <cerrno>

namespace ublk {

// ---- control commands (/dev/ublk-control, SQE128 URING_CMD) -------------------------------
// The numbers are the ioctl-style encodings (CMD_IOCTL_ENCODE); legacy plain numbers are not used.
struct ctrl_cmd {
  __u32 dev_id;
  __u16 queue_id;  // 0xffff when the command is not about one queue
  __u16 len;       // bytes at addr
  __u64 addr;      // user buffer for the command's payload
  __u64 data[1];   // inline argument (pid for START_DEV / END_USER_RECOVERY)
  __u16 dev_path_len;
  __u16 pad;
  __u32 reserved;
};

constexpr unsigned kCmdAddDev = _IOWR('u', 0x04, struct ctrl_cmd);
constexpr unsigned kCmdDelDev = _IOWR('u', 0x05, struct ctrl_cmd);
constexpr unsigned kCmdStartDev = _IOWR('u', 0x06, struct ctrl_cmd);
constexpr unsigned kCmdStopDev = _IOWR('u', 0x07, struct ctrl_cmd);
constexpr unsigned kCmdSetParams = _IOWR('u', 0x08, struct ctrl_cmd);
constexpr unsigned kCmdGetParams = _IOR('u', 0x09, struct ctrl_cmd);
constexpr unsigned kCmdGetQueueAffinity = _IOR('u', 0x01, struct ctrl_cmd);
constexpr unsigned kCmdGetDevInfo = _IOR('u', 0x02, struct ctrl_cmd);
constexpr unsigned kCmdStartUserRecovery = _IOWR('u', 0x10, struct ctrl_cmd);
constexpr unsigned kCmdEndUserRecovery = _IOWR('u', 0x11, struct ctrl_cmd);
constexpr unsigned kCmdGetDevInfo2 = _IOR('u', 0x12, struct ctrl_cmd);
constexpr unsigned kCmdGetFeatures = _IOR('u', 0x13, struct ctrl_cmd);
constexpr unsigned kCmdDelDevAsync = _IOR('u', 0x14, struct ctrl_cmd);
constexpr unsigned kCmdUpdateSize = _IOWR('u', 0x15, struct ctrl_cmd);
constexpr unsigned kCmdQuiesceDev = _IOWR('u', 0x16, struct ctrl_cmd);

struct ctrl_dev_info {
  __u16 nr_hw_queues;
  __u16 queue_depth;
  __u16 state;
  __u16 pad0;
  __u32 max_io_buf_bytes;
  __u32 dev_id;
  __s32 ublksrv_pid;
  __u32 pad1;
  __u64 flags;
  __u64 ublksrv_flags;  // private to the server; the kernel keeps it for us
  __u32 owner_uid;
  __u32 owner_gid;
  __u64 reserved1;
  __u64 reserved2;
};

enum dev_state : __u16 { kStateDead = 0, kStateLive = 1, kStateQuiesced = 2, kStateFailIo = 3 };

// ---- feature flags (UBLK_F_*) ----------------------------------------------------------------
constexpr __u64 kFeatSupportZeroCopy = 1ULL << 0;
constexpr __u64 kFeatUringCmdCompInTask = 1ULL << 1;
constexpr __u64 kFeatNeedGetData = 1ULL << 2;
constexpr __u64 kFeatUserRecovery = 1ULL << 3;
constexpr __u64 kFeatUserRecoveryReissue = 1ULL << 4;
constexpr __u64 kFeatUnprivilegedDev = 1ULL << 5;
constexpr __u64 kFeatCmdIoctlEncode = 1ULL << 6;
constexpr __u64 kFeatUserCopy = 1ULL << 7;
constexpr __u64 kFeatZoned = 1ULL << 8;
constexpr __u64 kFeatUserRecoveryFailIo = 1ULL << 9;
constexpr __u64 kFeatUpdateSize = 1ULL << 10;
constexpr __u64 kFeatAutoBufReg = 1ULL << 11;
constexpr __u64 kFeatQuiesce = 1ULL << 12;
constexpr __u64 kFeatPerIoDaemon = 1ULL << 13;
constexpr __u64 kFeatBufRegOffDaemon = 1ULL << 14;
constexpr __u64 kFeatBatchIo = 1ULL << 15;

// ---- parameters (SET_PARAMS / GET_PARAMS) -----------------------------------------------------
constexpr __u32 kParamBasic = 1 << 0;
constexpr __u32 kParamDiscard = 1 << 1;
constexpr __u32 kParamDevt = 1 << 2;  // read-only: filled by GET_PARAMS, never SET
constexpr __u32 kParamZoned = 1 << 3;
constexpr __u32 kParamDmaAlign = 1 << 4;
constexpr __u32 kParamSegment = 1 << 5;
constexpr __u32 kParamIntegrity = 1 << 6;

constexpr __u32 kAttrReadOnly = 1 << 0;
constexpr __u32 kAttrRotational = 1 << 1;
constexpr __u32 kAttrVolatileCache = 1 << 2;
constexpr __u32 kAttrFua = 1 << 3;

struct param_basic {
  __u32 attrs;
  __u8 logical_bs_shift;
  __u8 physical_bs_shift;
  __u8 io_opt_shift;
  __u8 io_min_shift;
  __u32 max_sectors;
  __u32 chunk_sectors;
  __u64 dev_sectors;
  __u64 virt_boundary_mask;
};

struct param_discard {
  __u32 discard_alignment;
  __u32 discard_granularity;
  __u32 max_discard_sectors;
  __u32 max_write_zeroes_sectors;
  __u16 max_discard_segments;
  __u16 reserved0;
};

struct param_devt {
  __u32 char_major;
  __u32 char_minor;
  __u32 disk_major;
  __u32 disk_minor;
};

struct param_zoned {
  __u32 max_open_zones;
  __u32 max_active_zones;
  __u32 max_zone_append_sectors;
  __u8 reserved[20];
};

struct param_dma_align {
  __u32 alignment;
  __u8 pad[4];
};

struct param_segment {
  __u64 seg_boundary_mask;  // a segment may not cross this boundary
  __u32 max_segment_size;
  __u16 max_segments;
  __u8 pad[2];
};

// Integrity parameters exist in the ABI (7.0); ublk-ts does not use them, so they stay opaque.
struct param_integrity {
  __u8 opaque[16];
};

struct params {
  __u32 len;    // sizeof(params) for the ABI version we speak
  __u32 types;  // which of the members below are valid
  struct param_basic basic;
  struct param_discard discard;
  struct param_devt devt;
  struct param_zoned zoned;
  struct param_dma_align dma;
  struct param_segment seg;
  struct param_integrity integrity;
};

// ---- I/O commands (/dev/ublkcN, plain 64-byte SQE URING_CMD) ----------------------------------
struct io_cmd {
  __u16 q_id;
  __u16 tag;
  __s32 result;  // bytes done or -errno, for COMMIT_AND_FETCH
  __u64 addr;    // copy mode: the tag's buffer; zero copy: buffer-table index
};

constexpr unsigned kIoFetchReq = _IOWR('u', 0x20, struct io_cmd);
constexpr unsigned kIoCommitAndFetchReq = _IOWR('u', 0x21, struct io_cmd);
constexpr unsigned kIoNeedGetData = _IOWR('u', 0x22, struct io_cmd);
constexpr unsigned kIoRegisterIoBuf = _IOWR('u', 0x23, struct io_cmd);
constexpr unsigned kIoUnregisterIoBuf = _IOWR('u', 0x24, struct io_cmd);

// ---- batched I/O commands (UBLK_F_BATCH_IO, Linux 7.0) -----------------------------------------
// Instead of one FETCH / COMMIT_AND_FETCH per tag: PREP_IO_CMDS hands the kernel every tag once,
// one multishot FETCH_IO_CMDS delivers the tags of new requests (2 bytes each) into a provided
// buffer, and COMMIT_IO_CMDS completes any number of requests at once; a committed tag is ready
// for its next request without a new fetch. The SQE's cmd area holds a batch_io header; PREP and
// COMMIT point sqe->addr at an array of elements (a batch_elem, then buf_addr when HAS_BUF_ADDR).
struct batch_io {
  __u16 q_id;
  __u16 flags;  // kBatchF*
  __u16 nr_elem;
  __u8 elem_bytes;  // 8, 16 with HAS_BUF_ADDR; 2 (a tag) for FETCH_IO_CMDS
  __u8 reserved;
  __u64 reserved2;
};

struct batch_elem {
  __u16 tag;
  __u16 buf_index;  // AUTO_BUF_REG: where the kernel registers the next request's pages
  __s32 result;     // COMMIT: bytes done or -errno
};

constexpr __u16 kBatchFHasZoneLba = 1U << 0;
constexpr __u16 kBatchFHasBufAddr = 1U << 1;  // copy mode: each element is followed by a u64 buffer address
constexpr __u16 kBatchFAutoBufRegFallback = 1U << 2;

constexpr unsigned kIoPrepIoCmds = _IOWR('u', 0x25, struct batch_io);
constexpr unsigned kIoCommitIoCmds = _IOWR('u', 0x26, struct batch_io);
constexpr unsigned kIoFetchIoCmds = _IOWR('u', 0x27, struct batch_io);

// io_uring bits newer than the system's 6.1 headers: a multishot URING_CMD, and a provided-buffer
// ring whose buffers are consumed piecewise (each completion continues where the last stopped).
constexpr __u32 kUringCmdMultishot = 1U << 1;   // IORING_URING_CMD_MULTISHOT, sqe->uring_cmd_flags
constexpr __u16 kPbufRingInc = 1U << 1;         // IOU_PBUF_RING_INC, io_uring_buf_reg flags

// Results of a FETCH's completion: only ABORT means "do not fetch again".
constexpr int kIoResOk = 0;
constexpr int kIoResNeedGetData = 1;
constexpr int kIoResAbort = -ENODEV;

// The per-request descriptor the kernel fills in the mmapped array.
struct io_desc {
  __u32 op_flags;  // op in bits 0-7, UBLK_IO_F_* above
  __u32 nr_sectors;
  __u64 start_sector;
  __u64 addr;
};

enum io_op : __u8 {
  kOpRead = 0,
  kOpWrite = 1,
  kOpFlush = 2,
  kOpDiscard = 3,
  kOpWriteSame = 4,
  kOpWriteZeroes = 5,
};

constexpr __u32 kIoFFailfastDev = 1U << 8;
constexpr __u32 kIoFFailfastTransport = 1U << 9;
constexpr __u32 kIoFFailfastDriver = 1U << 10;
constexpr __u32 kIoFMeta = 1U << 11;
constexpr __u32 kIoFFua = 1U << 13;
constexpr __u32 kIoFNoUnmap = 1U << 15;
constexpr __u32 kIoFSwap = 1U << 16;
constexpr __u32 kIoFNeedRegBuf = 1U << 17;

inline unsigned desc_op(const io_desc *d) { return d->op_flags & 0xff; }

// Where each queue's descriptor array sits in /dev/ublkcN's mmap space.
constexpr unsigned kMaxQueueDepth = 4096;
constexpr unsigned kMaxNrQueues = 4096;
constexpr __u64 kCmdBufOffset = 0;

// User copy: the request's data is read/written at this offset of /dev/ublkcN.
constexpr __u64 kIoBufOffset = 0x80000000ULL;
constexpr unsigned kIoBufBits = 25;   // one request carries at most 32 MiB
constexpr unsigned kTagOff = kIoBufBits;
constexpr unsigned kTagBits = 16;
constexpr unsigned kQidOff = kTagOff + kTagBits;
constexpr unsigned kQidBits = 12;

inline __u64 user_copy_offset(unsigned q_id, unsigned tag, __u64 byte_off) {
  return kIoBufOffset + ((__u64)q_id << kQidOff) + ((__u64)tag << kTagOff) + byte_off;
}

// AUTO_BUF_REG: what the kernel reads out of a FETCH/COMMIT SQE's `addr` field.
constexpr __u8 kAutoBufRegFallback = 1;
inline __u64 auto_buf_reg_addr(__u16 index, __u8 flags) {
  return (__u64)index | ((__u64)flags << 16);
}

// ---- layout checks (x86_64 sizes and offsets of the kernel's ABI) -----------------------------
static_assert(sizeof(ctrl_cmd) == 32, "ublksrv_ctrl_cmd is 32 bytes");
static_assert(sizeof(ctrl_dev_info) == 64, "ublksrv_ctrl_dev_info is 64 bytes");
static_assert(offsetof(ctrl_dev_info, flags) == 24, "dev_info.flags offset");
static_assert(sizeof(io_cmd) == 16, "ublksrv_io_cmd is 16 bytes");
static_assert(sizeof(io_desc) == 24, "ublksrv_io_desc is 24 bytes");
static_assert(sizeof(batch_io) == 16, "ublk_batch_io is 16 bytes");
static_assert(sizeof(batch_elem) == 8, "ublk_elem_header is 8 bytes");
static_assert(sizeof(param_basic) == 32, "ublk_param_basic");
static_assert(offsetof(params, basic) == 8, "params.basic at 8");
static_assert(offsetof(params, discard) == 40, "params.discard at 40");
static_assert(offsetof(params, devt) == 60, "params.devt at 60");
static_assert(offsetof(params, zoned) == 76, "params.zoned at 76");
static_assert(offsetof(params, dma) == 108, "params.dma at 108");
static_assert(offsetof(params, seg) == 120, "params.seg at 120");
static_assert(offsetof(params, integrity) == 136, "params.integrity at 136");
static_assert(sizeof(params) == 152, "ublk_params is 152 bytes");
static_assert(kCmdAddDev == 0xc0207504u && kCmdGetFeatures == 0x80207513u && kCmdGetQueueAffinity == 0x80207501u, "ctrl opcodes");
static_assert(kIoFetchReq == 0xc0107520u && kIoUnregisterIoBuf == 0xc0107524u, "io opcodes");

}  // namespace ublk
