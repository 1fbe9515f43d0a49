// SPDX-License-Identifier: MIT
// The host's side of guest memory, as the primary MMU sees it: which frame
// backs each gfn of the VMM's mapping. What hva_to_pfn() finds when a fault
// looks a page up, changed only by the host (migration, unmapping), and
// only between the MMU notifier's invalidate_range_start and _end.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>

#include "sync/tracked_mutex.h"

namespace mirrormmu {

class HostMm {
 public:
  // Every gfn is backed by base + gfn until the host moves it.
  void set_base(uint64_t base) {
    std::lock_guard g(mu_);
    base_ = base;
  }
  uint64_t pfn(uint64_t gfn) const {
    std::lock_guard g(mu_);
    auto it = moved_.find(gfn);
    return it == moved_.end() ? base_ + gfn : it->second;
  }
  void remap(uint64_t gfn, uint64_t pfn) {
    std::lock_guard g(mu_);
    moved_[gfn] = pfn;
  }
  // The largest page the host maps memory with (1 4K, 2 THP, 3 hugetlbfs).
  void set_max_level(int level) {
    std::lock_guard g(mu_);
    max_level_ = level;
  }
  // host_pfn_mapping_level(): a block the host moved pages of is no longer
  // one huge page of its own.
  int level(uint64_t gfn) const {
    std::lock_guard g(mu_);
    for (int level = max_level_; level > 1; level--) {
      const uint64_t n = 1ull << (9 * (level - 1)), base = gfn & ~(n - 1);
      auto it = moved_.lower_bound(base);
      if (it == moved_.end() || it->first >= base + n) return level;
    }
    return 1;
  }

 private:
  mutable sync::TrackedMutex mu_;
  uint64_t base_ = 0;
  int max_level_ = 3;
  std::map<uint64_t, uint64_t> moved_;
};

}  // namespace mirrormmu
