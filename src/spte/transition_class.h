// SPDX-License-Identifier: MIT
// SPTE changes by class: old kind x new kind x lock mode x root type. Below
// the VM layer so any MMU behind vm/direct_mmu.h can count its changes; the
// table's rows (refusals, sites) are check/transitions.h.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "base/thread_counters.h"
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

  // Every SPTE change counts itself here, on whatever thread made it: a
  // block of counters per thread, so the count costs no locked add.
  void add(const TransitionClass& c) { counts_.add(index(c)); }
  uint64_t count(size_t i) const { return counts_.sum(i); }
  uint64_t total() const;
  size_t distinct() const;

 private:
  ThreadCounters<kClasses> counts_;
};

}  // namespace mirrormmu
