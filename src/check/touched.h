// SPDX-License-Identifier: MIT
// The gfn ranges something changed since the last check, gathered from the
// MMU's change notifications, the SEAMCALLs and the VM's own range
// operations as they happen (vCPU threads included), so an incremental
// check walks those and not the whole guest.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "base/types.h"

namespace mirrormmu {

struct TouchedRange {
  Gfn start, end;  // [start, end)
};

class TouchedRanges {
 public:
  // Granularity: ranges are widened to 2M, the size of the leaf a change
  // at 4K or 2M can belong to.
  static constexpr uint64_t kRegionPages = 512;

  // [start, start + npages), in the un-aliased gfn space. Any thread.
  void add(Gfn start, uint64_t npages);
  // Everything added since the last take(), sorted, merged, and cleared.
  std::vector<TouchedRange> take();

 private:
  static uint64_t next_epoch();
  std::mutex mu_;
  std::vector<TouchedRange> ranges_;
  // Bumped by take(): a thread's memory of the region it added last holds
  // only within the epoch it was added in.
  // Epochs are unique across instances, so a new set at a dead one's
  // address is never mistaken for it.
  std::atomic<uint64_t> epoch_{next_epoch()};
};

}  // namespace mirrormmu
