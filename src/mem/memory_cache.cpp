// SPDX-License-Identifier: MIT
#include "mem/memory_cache.h"

#include <algorithm>

namespace mirrormmu {

Pfn PageCache::alloc_one() {
  Pfn pfn = pool_.alloc(cfg_.owner, cfg_.with_memory);
  if (pfn.valid() && cfg_.with_memory) {
    uint64_t* p = pool_.page_ptr(pfn);
    const uint64_t v = cfg_.init_value.value_or(0);
    std::fill(p, p + kSptePerPage, v);
  }
  return pfn;
}

int PageCache::topup(int min, FaultInjector* inject) {
  if (nobjs() >= min) return 0;
  if (inject && inject->check(InjectPoint::CacheTopup) != Injection::None) return -ENOMEM;
  while (nobjs() < cfg_.capacity) {
    Pfn pfn = alloc_one();
    if (!pfn.valid()) return nobjs() >= min ? 0 : -ENOMEM;
    objs_.push_back(pfn);
  }
  return 0;
}

Pfn PageCache::alloc(BugTracker& kvm) {
  if (warn_on_once(objs_.empty(), kvm, Site::memcache_empty)) return alloc_one();
  Pfn pfn = objs_.back();
  objs_.pop_back();
  return pfn;
}

void PageCache::put_back(Pfn pfn) {
  if (cfg_.with_memory) {
    uint64_t* p = pool_.page_ptr(pfn);
    std::fill(p, p + kSptePerPage, cfg_.init_value.value_or(0));
  }
  objs_.push_back(pfn);
}

void PageCache::free_all() {
  for (Pfn pfn : objs_) pool_.free(pfn, cfg_.owner);
  objs_.clear();
}

}  // namespace mirrormmu
