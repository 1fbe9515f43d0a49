// SPDX-License-Identifier: MIT
// The host's side of guest memory, as the primary MMU sees it: which frame
// backs each gfn of the VMM's mapping. What hva_to_pfn() finds when a fault
// looks a page up, changed only by the host (migration, unmapping), and
// only between the MMU notifier's invalidate_range_start and _end.
#pragma once

#include <cstdint>
#include <mutex>
#include <unordered_map>

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

 private:
  mutable std::mutex mu_;
  uint64_t base_ = 0;
  std::unordered_map<uint64_t, uint64_t> moved_;
};

}  // namespace mirrormmu
