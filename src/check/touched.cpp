// SPDX-License-Identifier: MIT
#include "check/touched.h"

#include <algorithm>

namespace mirrormmu {

namespace {
// A vCPU faulting a 2M chunk in changes the same region 512 times in a row:
// remembering the last region this thread added keeps the lock out of all
// but the first.
struct LastAdded {
  const TouchedRanges* owner = nullptr;
  uint64_t epoch = 0;
  uint64_t region = ~0ull;
};
thread_local LastAdded t_last;
std::atomic<uint64_t> g_epochs{1};
}  // namespace

uint64_t TouchedRanges::next_epoch() { return g_epochs.fetch_add(1, std::memory_order_relaxed); }

void TouchedRanges::add(Gfn start, uint64_t npages) {
  const uint64_t lo = start.v & ~(kRegionPages - 1);
  uint64_t hi = start.v + std::max<uint64_t>(npages, 1);
  hi = hi < start.v ? ~0ull & ~(kRegionPages - 1) : (hi + kRegionPages - 1) & ~(kRegionPages - 1);
  const bool one_region = hi - lo == kRegionPages;
  if (one_region && t_last.owner == this && t_last.region == lo &&
      t_last.epoch == epoch_.load(std::memory_order_acquire))
    return;
  std::lock_guard g(mu_);
  ranges_.push_back({Gfn{lo}, Gfn{hi}});
  if (one_region) t_last = {this, epoch_.load(std::memory_order_relaxed), lo};
}

std::vector<TouchedRange> TouchedRanges::take() {
  std::vector<TouchedRange> r;
  {
    std::lock_guard g(mu_);
    r.swap(ranges_);
    epoch_.store(next_epoch(), std::memory_order_release);
  }
  std::sort(r.begin(), r.end(), [](const TouchedRange& a, const TouchedRange& b) { return a.start < b.start; });
  size_t n = 0;
  for (const TouchedRange& x : r) {
    if (n && x.start <= r[n - 1].end) r[n - 1].end = std::max(r[n - 1].end, x.end);
    else r[n++] = x;
  }
  r.resize(n);
  return r;
}

}  // namespace mirrormmu
