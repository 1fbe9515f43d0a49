// SPDX-License-Identifier: MIT
// Text from the user (a replay string, a flag's value) quoted back in a
// one-line error: control and non-ASCII bytes escaped, long text cut.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace mirrormmu {

inline std::string printable(std::string_view s, size_t max = 120) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (out.size() >= max) return out + "...";
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

}  // namespace mirrormmu
