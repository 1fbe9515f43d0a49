// SPDX-License-Identifier: MIT
// The transition table's rows: each class of spte/transition_class.h with
// what a design refused and which sites fired while it was handled.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/bug.h"

#include "spte/spte.h"
#include "spte/transition_class.h"

namespace mirrormmu {

// One row of the transition table as one run or execution saw it: how often
// __handle_changed_spte() was called for it, how often the design refused it
// (by errno), and which sites fired while it was being handled.
struct TransitionRow {
  uint64_t attempts = 0;
  std::map<int, uint64_t> refused;  // -errno -> times
  std::map<Site, uint64_t> sites;
  void merge(const TransitionRow& o);
};
// Rows beyond the classes: sites hit while no change was being handled, and
// sites hit in an RCU callback the deterministic engine ran.
inline constexpr size_t kRowOutside = TransitionCounts::kClasses;
inline constexpr size_t kRowRcuCallback = TransitionCounts::kClasses + 1;
inline constexpr size_t kTransitionRows = TransitionCounts::kClasses + 2;
using TransitionRows = std::vector<TransitionRow>;  // kTransitionRows, or empty

}  // namespace mirrormmu
