// SPDX-License-Identifier: MIT
// Scenario files: any bytes either parse into a scenario within the bounds
// the reader promises, or are refused with one line; never a crash, a hang
// or an allocation the bounds do not allow.
#include <cstddef>
#include <cstdint>
#include <string>

#include "explore/scenario.h"

using namespace mirrormmu;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string error;
  const auto s = explore::parse_scenario_text(std::string(reinterpret_cast<const char*>(data), size), "fuzz", &error);
  if (!s) {
    if (error.empty() || error.find('\n') != std::string::npos) __builtin_trap();
    return 0;
  }
  if (s->slots.empty() || s->threads.empty() || s->vcpus < 1 || s->vcpus > 16) __builtin_trap();
  for (const auto& t : s->threads)
    for (const auto& o : t.ops)
      if (o.vcpu >= s->vcpus || o.npages == 0 || (o.gpa & (kPageSize - 1))) __builtin_trap();
  for (size_t i = 0; i < s->slots.size(); i++)
    for (size_t k = 0; k < i; k++) {
      const auto &a = s->slots[i], &b = s->slots[k];
      if (a.gpa < b.gpa + b.size && b.gpa < a.gpa + a.size) __builtin_trap();
    }
  return 0;
}
