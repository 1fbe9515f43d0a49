// SPDX-License-Identifier: MIT
// Every SPTE change classified: old kind x new kind x lock mode x root type.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/bug.h"

#include "spte/spte.h"

namespace mirrormmu {

inline constexpr int kSpteKinds = 5;  // spte::Kind

struct TransitionClass {
  spte::Kind old_kind;
  spte::Kind new_kind;
  bool shared;
  bool mirror;
  std::string name() const;  // "nonpresent->leaf shared mirror"
};

class TransitionCounts {
 public:
  static constexpr size_t kClasses = kSpteKinds * kSpteKinds * 2 * 2;
  static size_t index(const TransitionClass& c) {
    return ((static_cast<size_t>(c.old_kind) * kSpteKinds + static_cast<size_t>(c.new_kind)) * 2 +
            c.shared) * 2 + c.mirror;
  }
  static TransitionClass at(size_t i);

  void add(const TransitionClass& c) { counts_[index(c)].fetch_add(1, std::memory_order_relaxed); }
  uint64_t count(size_t i) const { return counts_[i].load(std::memory_order_relaxed); }
  uint64_t total() const;
  size_t distinct() const;

 private:
  std::array<std::atomic<uint64_t>, kClasses> counts_{};
};

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
