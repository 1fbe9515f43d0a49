// SPDX-License-Identifier: MIT
#include "mem/memory_cache.h"

#include <algorithm>

namespace mirrormmu {

Pfn PageCache::alloc_one() { return pool_.alloc(cfg_.owner, cfg_.with_memory); }

// The kernel fills a cache's objects when it tops the cache up; nothing can
// see one before it is taken, so here it is filled when taken: most of the
// 40 pages a vCPU's first fault tops up are never used in a short explored
// execution, and filling them was a tenth of its time.
Pfn PageCache::prepared(Pfn pfn) {
  if (pfn.valid() && cfg_.with_memory) {
    uint64_t* p = pool_.page_ptr(pfn);
    std::fill(p, p + kSptePerPage, cfg_.init_value.value_or(0));
  }
  return pfn;
}

int PageCache::refill(int min, FaultInjector* inject) {
  if (inject && inject->check(InjectPoint::CacheTopup) != Injection::None) return -ENOMEM;
  while (nobjs() < cfg_.capacity) {
    Pfn pfn = alloc_one();
    if (!pfn.valid()) return nobjs() >= min ? 0 : -ENOMEM;
    objs_.push_back(pfn);
  }
  return 0;
}

Pfn PageCache::alloc(BugTracker& kvm) {
  if (warn_on_once(objs_.empty(), kvm, Site::memcache_empty)) return prepared(alloc_one());
  Pfn pfn = objs_.back();
  objs_.pop_back();
  return prepared(pfn);
}

void PageCache::put_back(Pfn pfn) { objs_.push_back(pfn); }

void PageCache::free_all() {
  for (Pfn pfn : objs_) pool_.free(pfn, cfg_.owner);
  objs_.clear();
}

}  // namespace mirrormmu
