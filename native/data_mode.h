// How request data moves between the block layer and the server, slowest first. The engine picks
// the path in one place (data_path.cc); targets only say which modes they can serve.
#pragma once

#include <string>

namespace ublk {

enum class DataMode { Copy, UserCopy, ZcAuto, ZcExplicit };

constexpr unsigned mode_bit(DataMode m) { return 1u << (unsigned)m; }
constexpr unsigned kAllDataModes = 0xf;
constexpr unsigned kZeroCopyModes = mode_bit(DataMode::ZcAuto) | mode_bit(DataMode::ZcExplicit);

// The names TypeScript uses (binding.ts DataMode).
inline const char *data_mode_name(DataMode m) {
  switch (m) {
    case DataMode::Copy: return "copy";
    case DataMode::UserCopy: return "user_copy";
    case DataMode::ZcAuto: return "zc_auto";
    case DataMode::ZcExplicit: return "zc_explicit";
  }
  return "?";
}

inline bool parse_data_mode(const std::string &s, DataMode *m) {
  for (DataMode x : {DataMode::Copy, DataMode::UserCopy, DataMode::ZcAuto, DataMode::ZcExplicit}) {
    if (s == data_mode_name(x)) {
      *m = x;
      return true;
    }
  }
  return false;
}

}  // namespace ublk
