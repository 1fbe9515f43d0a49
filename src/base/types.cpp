// SPDX-License-Identifier: MIT
#include "base/types.h"

#include <cstring>
#include <string>

namespace mirrormmu {

const char* level_name(PgLevel l) {
  switch (l) {
    case PgLevel::k4K: return "4K";
    case PgLevel::k2M: return "2M";
    case PgLevel::k1G: return "1G";
    case PgLevel::k512G: return "512G";
    case PgLevel::k256T: return "256T";
  }
  return "?";
}

std::string errno_str(int ret) {
  if (const char* n = strerrorname_np(-ret)) {
    std::string s(1, '-');
    return s.append(n);
  }
  return std::to_string(ret);
}

}  // namespace mirrormmu
