// SPDX-License-Identifier: MIT
// Replay strings: any text either parses, and then prints back to a string
// that parses to the same schedule, or is refused with one line.
#include <cstddef>
#include <cstdint>
#include <string>

#include "explore/explorer.h"

using namespace mirrormmu;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string error;
  const auto s = explore::Schedule::parse(std::string(reinterpret_cast<const char*>(data), size), &error);
  if (!s) {
    if (error.empty() || error.find('\n') != std::string::npos) __builtin_trap();
    return 0;
  }
  const std::string text = s->str();
  std::string again_error;
  const auto again = explore::Schedule::parse(text, &again_error);
  if (!again || again->str() != text) __builtin_trap();
  return 0;
}
