// SPDX-License-Identifier: MIT
// Dynamic PAMT, the KVM side ([P1]: tdx_pamt_get / tdx_pamt_put and the
// tdx_pamt_cache).
//
// With DPAMT the module has no 4K PAMT level of its own: before a frame of a
// 2M host region becomes a 4K TD page (private page, S-EPT page, control
// page) the host lends the region a page pair (PAMT.ADD), and it takes the
// pair back (PAMT.REMOVE) once no frame of the region is one any more; the
// module refuses earlier. So KVM counts, per 2M region, the 4K pages the
// module holds or is about to be given: ADD on 0 -> 1, REMOVE on 1 -> 0,
// both under the global pamt_lock, so a get never meets a pair being removed
// and two gets never both add one. Pages used at 2M need no pair.
//
// As posted in "[PATCH v6 00/11] Dynamic PAMT" (Rick Edgecombe, 2026-05-25):
// a PAMT page cache per vCPU, topped up through topup_external_cache() from
// mmu_topup_memory_caches() and found by the hooks through the running vCPU.
// Simplification: no lock-free fast paths (inc_not_zero, dec_and_test), so
// no HPA_RANGE_NOT_FREE race to resolve.
#include <cerrno>

#include "sync/sched.h"
#include "tdx/tdx_ops.h"

namespace mirrormmu::tdx {

namespace {

constexpr size_t kPairPages = 2;  // TDX_DPAMT_ENTRY_PAGE_CNT

uint64_t region_of(Pfn page) { return page.v >> kLevelBits; }
Pfn region_base(Pfn page) { return Pfn{region_of(page) << kLevelBits}; }

}  // namespace

// ---- pamt_lock and the cache -------------------------------------------------------

void PamtLock::lock() {
  sync::sched_point(sync::PointKind::LockAcquire, this);
  // A spinlock, as in the kernel; under the deterministic engine the waiter
  // leaves the runnable set until unlock() wakes it.
  while (held_.exchange(true, std::memory_order_acquire)) sync::wait_event(this);
}

void PamtLock::unlock() {
  held_.store(false, std::memory_order_release);
  sync::wake_event(this);
  sync::sched_point(sync::PointKind::LockRelease, this);
}

// n_ never exceeds pages_.size(): raised after a push, lowered before a pop.
int PamtCache::topup(size_t min) {
  while (pages_.size() < min) {
    const Pfn p = pool_.alloc(PageOwner::Pamt);
    if (!p.valid()) return -ENOMEM;
    pages_.push_back(p);
    n_.store(pages_.size(), std::memory_order_relaxed);
  }
  return 0;
}

Pfn PamtCache::take() {
  if (pages_.empty()) return kInvalidPfn;
  n_.store(pages_.size() - 1, std::memory_order_relaxed);
  const Pfn p = pages_.back();
  pages_.pop_back();
  return p;
}

void PamtCache::give_back(Pfn page) {
  if (!page.valid()) return;
  pages_.push_back(page);
  n_.store(pages_.size(), std::memory_order_relaxed);
}

void PamtCache::free_all() {
  n_.store(0, std::memory_order_relaxed);
  for (Pfn p : pages_) pool_.free(p, PageOwner::Pamt);
  pages_.clear();
}

PamtCache& TdxOps::pamt_cache_for(int vcpu) {
  if (vcpu < 0 || static_cast<size_t>(vcpu) >= vcpu_pamt_caches_.size()) return vm_pamt_cache_;
  return *vcpu_pamt_caches_[static_cast<size_t>(vcpu)];
}

// tdx_topup_external_pamt_cache(): a pair for each table a fault may link
// and for its leaf (min_nr_spts of them). Only this vCPU's thread takes from
// its cache, so the common case needs no lock.
int TdxOps::topup_external_cache(int vcpu, int min_nr_spts) {
  if (!dpamt()) return 0;
  PamtCache& cache = pamt_cache_for(vcpu);
  const size_t min = kPairPages * static_cast<size_t>(min_nr_spts);
  if (cache.size() >= min) return 0;
  if (inject_ && inject_->check(InjectPoint::PamtPair) != Injection::None) return -ENOMEM;
  std::lock_guard g(pamt_lock_);
  return cache.topup(min);
}

// ---- get / put -----------------------------------------------------------------------

int TdxOps::tdx_pamt_get(Pfn page, PgLevel level, PamtCache& cache) {
  // Only a 4K page has a 4K PAMT entry; a 2M one lives in the static level.
  if (!dpamt() || level != PgLevel::k4K) return 0;
  std::lock_guard g(pamt_lock_);
  return pamt_get_locked(page, cache);
}

int TdxOps::pamt_get_locked(Pfn page, PamtCache& cache) {
  const uint64_t region = region_of(page);
  if (auto it = pamt_refs_.find(region); it != pamt_refs_.end()) {
    it->second++;
    return 0;
  }
  const Pfn p0 = cache.take(), p1 = cache.take();
  if (warn_on_once(!p0.valid() || !p1.valid(), kvm_, Site::tdx_pamt_cache_empty)) {
    cache.give_back(p0);
    cache.give_back(p1);
    return -ENOMEM;
  }
  Status err = module_.tdh_phymem_pamt_add(region_base(page), p0, p1);
  // Nothing in this VM touches a region whose refcount is 0, so BUSY can only
  // come from outside (another TD's DEMOTE on the range): try once more.
  if (is_busy(err)) err = module_.tdh_phymem_pamt_add(region_base(page), p0, p1);
  if (err != TDX_SUCCESS) {
    // The module did not take them: still the cache's.
    cache.give_back(p0);
    cache.give_back(p1);
    if (is_busy(err)) return -EBUSY;
    tdx_bug_on(err, kvm_, Site::tdh_phymem_pamt_add);
    return -EIO;
  }
  pamt_refs_.emplace(region, 1);
  return 0;
}

void TdxOps::tdx_pamt_put(Pfn page, PgLevel level) {
  if (!dpamt() || level != PgLevel::k4K) return;
  std::lock_guard g(pamt_lock_);
  pamt_put_locked(page);
}

void TdxOps::pamt_put_locked(Pfn page) {
  const auto it = pamt_refs_.find(region_of(page));
  // A put without its get would pull the pair from under a page in use.
  if (warn_on_once(it == pamt_refs_.end(), kvm_, Site::tdx_pamt_put_unbalanced)) return;
  if (it->second > 1) {
    it->second--;
    return;
  }
  Pfn p0 = kInvalidPfn, p1 = kInvalidPfn;
  Ret r = module_.tdh_phymem_pamt_remove(region_base(page), &p0, &p1);
  if (is_busy(r.status)) r = module_.tdh_phymem_pamt_remove(region_base(page), &p0, &p1);
  // As the kernel: WARN and keep the refcount at 1. The pair stays lent
  // (leaked unless a later 1 -> 0 succeeds); the VM is not at fault.
  if (warn_on_once(!r.ok(), kvm_, Site::tdh_phymem_pamt_remove)) return;
  pamt_refs_.erase(it);
  pool_.free(p0, PageOwner::Pamt);
  pool_.free(p1, PageOwner::Pamt);
}

uint32_t TdxOps::pamt_refcount(Pfn frame) {
  std::lock_guard g(pamt_lock_);
  const auto it = pamt_refs_.find(region_of(frame));
  return it == pamt_refs_.end() ? 0 : it->second;
}

// tdx_alloc_control_page(): outside mmu_lock, so the VM thread tops up the
// shared cache as one of its callers and takes its pair from it.
int TdxOps::tdx_pamt_get_control(Pfn page) {
  if (int r = topup_external_cache(-1, 1)) return r;
  return tdx_pamt_get(page, PgLevel::k4K, vm_pamt_cache_);
}

// ---- DEMOTE 2M -> 4K -------------------------------------------------------------------
//
// The split range is a 2M page, so no frame of it is a 4K TD page and its
// refcount is 0: PAMT.ADD would refuse the range (HPA_RANGE_NOT_FREE), and
// DEMOTE instead installs the pair it is given in R12/R13. On success the
// refcount goes 0 -> 512 (as [P1] does), one reference per new 4K leaf, each
// dropped by the PAGE.REMOVE of its page; the last put removes the pair.
// [P1]'s fix for Yan's cross-TD BUSY also holds pamt_lock across DEMOTE;
// with one TD per module nothing else can touch the range, so it is not.

int TdxOps::tdx_pamt_demote_begin(Pfn new_sept_page, Pfn range, DemotePamt& d, PamtCache& cache) {
  if (!dpamt()) return 0;
  std::lock_guard g(pamt_lock_);
  if (int r = pamt_get_locked(new_sept_page, cache)) return r;
  // A pair already there (refcount > 0) is used by DEMOTE as it is.
  if (pamt_refs_.contains(region_of(range))) return 0;
  d.page0 = cache.take();
  d.page1 = cache.take();
  if (warn_on_once(!d.page0.valid() || !d.page1.valid(), kvm_, Site::tdx_pamt_cache_empty)) {
    cache.give_back(d.page0);
    cache.give_back(d.page1);
    d = {};
    pamt_put_locked(new_sept_page);
    return -ENOMEM;
  }
  return 0;
}

void TdxOps::tdx_pamt_demote_end(Pfn new_sept_page, Pfn range, DemotePamt& d, bool ok, PamtCache& cache) {
  if (!dpamt()) return;
  std::lock_guard g(pamt_lock_);
  if (ok) {
    pamt_refs_[region_of(range)] += kSptePerPage;
    if (d.page0.valid()) stats_.demote_pamt_pairs++;
    return;
  }
  cache.give_back(d.page0);
  cache.give_back(d.page1);
  pamt_put_locked(new_sept_page);
}

}  // namespace mirrormmu::tdx
