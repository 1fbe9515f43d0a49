// SPDX-License-Identifier: MIT
// kvm_mmu_memory_cache: objects allocated *before* mmu_lock is taken, so the
// fault path never allocates (or sleeps) under the lock. A failed top-up is
// an ordinary -ENOMEM for the caller; it never crashes.
#pragma once

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "base/bug.h"
#include "base/inject.h"
#include "mem/pfn_pool.h"

namespace mirrormmu {

inline constexpr int kNrObjsPerMemoryCache = 40;  // KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE

// A cache of page frames (mmu_shadow_page_cache, mmu_external_spt_cache).
class PageCache {
 public:
  struct Config {
    PageOwner owner = PageOwner::PageTable;
    bool with_memory = true;               // page tables need real memory
    std::optional<uint64_t> init_value{};  // 64-bit memset, e.g. SHADOW_NONPRESENT_VALUE
    int capacity = kNrObjsPerMemoryCache;
  };

  PageCache(PfnPool& pool, Config cfg) : pool_(pool), cfg_(cfg) {}
  ~PageCache() { free_all(); }
  PageCache(const PageCache&) = delete;
  PageCache& operator=(const PageCache&) = delete;

  // kvm_mmu_topup_memory_cache(mc, min): fills up to capacity when fewer than
  // `min` objects are held. Returns 0 or -ENOMEM.
  // Every fault asks; the answer is nearly always that enough are held.
  int topup(int min, FaultInjector* inject) { return nobjs() >= min ? 0 : refill(min, inject); }
  // kvm_mmu_memory_cache_alloc(): pops one. An empty cache WARNs and falls
  // back to an "atomic" allocation, which may fail (kInvalidPfn).
  Pfn alloc(BugTracker& kvm);
  // Gives back an object that was never used (e.g. a lost fault race).
  void put_back(Pfn pfn);

  int nobjs() const { return static_cast<int>(objs_.size()); }
  void free_all();

 private:
  int refill(int min, FaultInjector* inject);
  Pfn alloc_one();
  Pfn prepared(Pfn pfn);

  PfnPool& pool_;
  Config cfg_;
  std::vector<Pfn> objs_;
};

// A cache of zeroed headers (mmu_page_header_cache).
template <class T>
class ObjectCache {
 public:
  int topup(int min, int capacity = kNrObjsPerMemoryCache) {
    if (static_cast<int>(objs_.size()) >= min) return 0;
    while (static_cast<int>(objs_.size()) < capacity) objs_.push_back(std::make_unique<T>());
    return 0;
  }
  std::unique_ptr<T> alloc() {
    if (objs_.empty()) return std::make_unique<T>();
    auto p = std::move(objs_.back());
    objs_.pop_back();
    return p;
  }
  int nobjs() const { return static_cast<int>(objs_.size()); }
  void free_all() { objs_.clear(); }

 private:
  std::vector<std::unique_ptr<T>> objs_;
};

}  // namespace mirrormmu
