// SPDX-License-Identifier: MIT
// Roots: allocation and reuse, references, invalidation, teardown.
#include <algorithm>
#include <cerrno>

#include "mmu/tdp_mmu.h"
#include "spte/spte.h"

namespace mirrormmu {

const char* ret_pf_name(RetPf r) {
  switch (r) {
    case RetPf::Continue: return "RET_PF_CONTINUE";
    case RetPf::Retry: return "RET_PF_RETRY";
    case RetPf::Fixed: return "RET_PF_FIXED";
    case RetPf::Spurious: return "RET_PF_SPURIOUS";
    case RetPf::Emulate: return "RET_PF_EMULATE";
    case RetPf::WriteProtected: return "RET_PF_WRITE_PROTECTED";
    case RetPf::Invalid: return "RET_PF_INVALID";
  }
  return "?";
}

VcpuMmuCaches::VcpuMmuCaches(PfnPool& pool, int id)
    : vcpu_id(id),
      shadow_page_cache(pool, {PageOwner::PageTable, true, spte::kNonPresent}),
      // The external cache gets no initialisation: the TDX module fills an
      // S-EPT page (with the TD's key) when SEPT.ADD takes it.
      external_spt_cache(pool, {PageOwner::SeptPage, false, std::nullopt}) {}

void VcpuMmuCaches::free_all() {
  shadow_page_cache.free_all();
  external_spt_cache.free_all();
  page_header_cache.free_all();
}

TdpMmu::TdpMmu(PfnPool& pool, BugTracker& kvm, TdpMmuConfig cfg, FaultInjector* inject)
    : pool_(pool), kvm_(kvm), cfg_(cfg), inject_(inject) {
  if (cfg_.max_gfn_exclusive == 0) cfg_.max_gfn_exclusive = 1ull << (52 - kPageShift);
}

TdpMmu::~TdpMmu() {
  // Pending RCU callbacks point back at this object.
  sync::rcu_barrier();
  for (MmuPage* sp : zombies_) {
    if (sp->external_spt.valid() && !sp->external_linked) pool_.free(sp->external_spt, PageOwner::SeptPage);
    pool_.set_page_private(sp->spt_pfn, nullptr);
    pool_.free(sp->spt_pfn, PageOwner::PageTable);
    delete sp;
  }
}

void TdpMmu::set_external(ExternalOps* ops, std::unique_ptr<HookDesign> design) {
  external_ = ops;
  design_ = std::move(design);
  if (external_ && design_) external_->select_layout(design_->external_layout());
}

void TdpMmu::kvm_flush_remote_tlbs() {
  stats_.remote_tlb_flushes.fetch_add(1, std::memory_order_relaxed);
  if (remote_tlb_) remote_tlb_->flush(Gfn{0}, 0);
  if (observer_) observer_->on_tlb_flush(Gfn{0}, 0);
}

void TdpMmu::kvm_flush_remote_tlbs_range(Gfn start, uint64_t npages) {
  stats_.remote_tlb_flushes.fetch_add(1, std::memory_order_relaxed);
  if (remote_tlb_) remote_tlb_->flush(start, npages);
  if (observer_) observer_->on_tlb_flush(start, npages);
}

int TdpMmu::mmu_topup_external_caches(VcpuMmuCaches& c) {
  const int min = kRootMaxLevel;
  const int r = cfg_.external_spt_policy != ExternalSptPolicy::KvmCache
                    ? (external_ ? external_->topup_external_fault_cache(c.vcpu_id, min) : -EINVAL)
                    : c.external_spt_cache.topup(min, inject_);
  if (r) return r;
  // -1 for the root's table, +1 for the 4K leaf: they cancel out.
  return external_ ? external_->topup_external_cache(c.vcpu_id, kRootMaxLevel) : 0;
}

MmuPage* TdpMmu::tdp_mmu_alloc_sp(VcpuMmuCaches& c) {
  Pfn pfn = c.shadow_page_cache.alloc(kvm_);
  if (!pfn.valid()) return nullptr;
  MmuPage* sp = c.page_header_cache.alloc().release();
  sp->spt_pfn = pfn;
  sp->spt = pool_.page_ptr(pfn);
  sp->owner = this;
  pool_.set_page_private(pfn, sp);
  return sp;
}

bool TdpMmu::tdp_mmu_root_match(const MmuPage* root, unsigned types) const {
  if (!(types & kValidRoots)) return false;
  if (root->role.invalid) return (types & kInvalidRoots) != 0;
  return (types & (root->is_mirror() ? kMirrorRoots : kDirectRoots)) != 0;
}

std::vector<MmuPage*> TdpMmu::roots_snapshot(unsigned types) {
  std::vector<MmuPage*> out;
  std::lock_guard g(pages_lock_);
  for (MmuPage* r : roots_) {
    if (!tdp_mmu_root_match(r, types)) continue;
    // kvm_tdp_mmu_get_root(): refcount_inc_not_zero.
    int n = r->tdp_mmu_root_count.load();
    while (n > 0 && !r->tdp_mmu_root_count.compare_exchange_weak(n, n + 1)) {}
    if (n > 0) out.push_back(r);
  }
  return out;
}

MmuPage* TdpMmu::kvm_tdp_mmu_alloc_root(VcpuMmuCaches& c, bool mirror) {
  const MmuRole role{cfg_.root_level, mirror, false};
  sync::ReadGuard lock(mmu_lock_);
  // The look for a usable root and the insertion of a new one are one hold
  // of the pages lock: two vCPUs loading their first root at once must end
  // up sharing it. With the look in a hold of its own, both allocate, and
  // a TD gets two mirror roots, each linking its own copy of the upper
  // levels into the one S-EPT (SEPT.ADD on an entry no longer FREE).
  std::unique_lock g(pages_lock_);
  const auto usable = [&]() -> MmuPage* {
    for (MmuPage* r : roots_) {
      if (r->role.invalid || !r->role.same_kind(role)) continue;
      // kvm_tdp_mmu_get_root(): refcount_inc_not_zero.
      int n = r->tdp_mmu_root_count.load();
      while (n > 0 && !r->tdp_mmu_root_count.compare_exchange_weak(n, n + 1)) {}
      if (n > 0) return r;
    }
    return nullptr;
  };
  if (MmuPage* r = usable()) return r;
  if (cfg_.what_if.alloc_root_recheck_unlocked) [[unlikely]] {
    // Planted: the lock dropped between the look and the insertion, as
    // before the recheck under tdp_mmu_pages_lock went in.
    g.unlock();
    sync::sched_point(sync::PointKind::Yield, &roots_);
    g.lock();
  }
  MmuPage* root = tdp_mmu_alloc_sp(c);
  if (!root) return nullptr;
  root->role = role;
  root->gfn = Gfn{0};
  root->ptep = nullptr;
  // One reference for the vCPU, one the TDP MMU keeps until invalidation.
  root->tdp_mmu_root_count.store(2);
  stats_.root_allocs.fetch_add(1, std::memory_order_relaxed);
  roots_.push_back(root);
  return root;
}

void TdpMmu::kvm_tdp_mmu_put_root(MmuPage* root) {
  if (root->tdp_mmu_root_count.fetch_sub(1) != 1) return;
  // The last reference can only go away after invalidation dropped the
  // TDP MMU's own reference.
  kvm_bug_on(!root->role.invalid, kvm_, Site::put_root_valid);
  {
    std::lock_guard g(pages_lock_);
    roots_.erase(std::find(roots_.begin(), roots_.end(), root));
  }
  sync::call_rcu(&root->rcu_head, &TdpMmu::tdp_mmu_free_sp_rcu_callback);
}

void TdpMmu::kvm_tdp_mmu_invalidate_roots(unsigned types) {
  sync::assert_held_write(mmu_lock_, kvm_);
  types &= ~unsigned(kInvalidRoots);
  std::lock_guard g(pages_lock_);
  for (MmuPage* r : roots_) {
    if (!tdp_mmu_root_match(r, types) || r->role.invalid) continue;
    // The TDP MMU's own reference passes to the zapper.
    r->tdp_mmu_scheduled_root_to_zap = true;
    r->role.invalid = true;
  }
}

void TdpMmu::kvm_tdp_mmu_zap_invalidated_roots(bool shared) {
  if (shared) mmu_lock_.read_lock(); else mmu_lock_.write_lock();
  std::vector<MmuPage*> todo;
  {
    std::lock_guard g(pages_lock_);
    for (MmuPage* r : roots_)
      if (r->tdp_mmu_scheduled_root_to_zap) todo.push_back(r);
  }
  for (MmuPage* r : todo) {
    r->tdp_mmu_scheduled_root_to_zap = false;
    kvm_bug_on(!r->role.invalid, kvm_, Site::zap_invalidated_not_invalid);
    tdp_mmu_zap_root(r, shared);
    // Put last, so mmu_notifiers can still find the root while it is zapped.
    kvm_tdp_mmu_put_root(r);
  }
  if (shared) mmu_lock_.read_unlock(); else mmu_lock_.write_unlock();
}

void TdpMmu::kvm_mmu_uninit_tdp_mmu() {
  {
    sync::WriteGuard lock(mmu_lock_);
    kvm_tdp_mmu_invalidate_roots(kValidRoots);
  }
  kvm_tdp_mmu_zap_invalidated_roots(false);
  warn_on_once(stats_.tdp_mmu_pages.load() != 0, kvm_, Site::uninit_pages_left);
  {
    std::lock_guard g(pages_lock_);
    warn_on_once(!roots_.empty(), kvm_, Site::uninit_roots_left);
  }
  // Every table freed by call_rcu must be back before the VM goes away.
  sync::rcu_barrier();
}

}  // namespace mirrormmu
