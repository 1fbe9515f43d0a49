// SPDX-License-Identifier: MIT
// The TDX side of the hook layouts argued about on the list: the dedicated
// split hook ([HP]), the one set hook that dispatches on (old, new) ([P1],
// [P2]) with the void reclaim hook, and the TDX-side S-EPT page pool (the
// NAK'd "external spt cache" RFC).
#include <cerrno>

#include "mmu/mmu_page.h"
#include "mmu/tdp_iter.h"
#include "base/running_vcpu.h"
#include "spte/spte.h"
#include "tdx/tdx_ops.h"

namespace mirrormmu::tdx {

int TdxOps::tdx_sept_split_private_spte(Gfn gfn, PgLevel level, uint64_t old_spte, Pfn new_sept_page) {
  // Splitting under the shared lock is not supported: a failure after the
  // BLOCK would need an UNBLOCK, which can itself be BUSY.
  sync::assert_held_write(mmu_lock_, kvm_);
  // Only 2M -> 4K: the module's DEMOTE of 1G is interruptible.
  if (kvm_bug_on(level != PgLevel::k2M || !spte::is_leaf(old_spte, level), kvm_, Site::tdx_split_bad))
    return -EIO;
  if (kvm_bug_on(!new_sept_page.valid(), kvm_, Site::external_spt_null)) return -EIO;
  const uint64_t gpa = gfn.gpa();
  const int tl = tdx_level(level);
  const auto block_track_demote = [&](const DemotePamt& pair) {
    Ret r = tdh_do_no_vcpus([&] { return module_.tdh_mem_range_block(gpa, tl); });
    if (tdx_bug_on(r.status, kvm_, Site::tdh_mem_range_block)) return -EIO;
    tdx_track();
    // No UNBLOCK afterwards: DEMOTE leaves the 512 new leaves unblocked.
    r = tdh_do_no_vcpus(
        [&] { return module_.tdh_mem_page_demote(gpa, tl, new_sept_page, pair.page0, pair.page1); });
    if (tdx_bug_on(r.status, kvm_, Site::tdh_mem_page_demote)) return -EIO;
    return 0;
  };
  // [DPAMT] taken before the BLOCK, so that running short blocks nothing.
  // From the running vCPU's cache (a 4K accept inside a 2M mapping), else
  // the VM's (a conversion or hole punch that cuts a huge page).
  PamtCache& cache = pamt_cache_for(kvm_get_running_vcpu());
  const Pfn range = spte::to_pfn(old_spte);
  DemotePamt pair;
  if (int err = tdx_pamt_demote_begin(new_sept_page, range, pair, cache)) return err;
  const int ret = block_track_demote(pair);
  tdx_pamt_demote_end(new_sept_page, range, pair, ret == 0, cache);
  if (ret) return ret;
  stats_.demotes++;
  return 0;
}

int TdxOps::split_external_spt(Gfn gfn, PgLevel level, uint64_t old_spte, Pfn new_external_spt) {
  return tdx_sept_split_private_spte(gfn, level, old_spte, new_external_spt);
}

int TdxOps::tdx_sept_reclaim_private_spt(Pfn& external_spt) {
  // KVM never frees mirror page tables while the TD is alive.
  if (kvm_bug_on(module_.hkid_assigned(), kvm_, Site::tdx_free_hkid_assigned) ||
      tdx_reclaim_page(external_spt) != 0) {
    // Leaked on purpose: the module may still own the page (and so keeps
    // its DPAMT reference).
    external_spt = kInvalidPfn;
    stats_.leaked_pages++;
    return -EIO;
  }
  tdx_pamt_put(external_spt, PgLevel::k4K);
  return 0;
}

void TdxOps::reclaim_external_spt(Gfn gfn, MmuPage& sp) { tdx_sept_reclaim_private_spt(sp.external_spt); }

// tdx_sept_set_private_spte() after [P1]: the TDP MMU forwards the
// transition, TDX decides what it means.
int TdxOps::set_external_spte(Gfn gfn, uint64_t old_spte, uint64_t new_spte, PgLevel level) {
  if (merged_layout()) return tdx_sept_set_private_spte(gfn, old_spte, new_spte, level);
  const bool was_present = spte::is_shadow_present(old_spte);
  const bool is_present = spte::is_shadow_present(new_spte);
  if (was_present && is_present) {
    // present -> present is only ever a split of a huge leaf.
    if (kvm_bug_on(!spte::is_leaf(old_spte, level) || spte::is_last(new_spte, level), kvm_,
                   Site::tdx_split_bad))
      return -EIO;
    MmuPage* child = spte_to_child_sp(pool_, new_spte);
    return tdx_sept_split_private_spte(gfn, level, old_spte, child->external_spt);
  }
  if (was_present) {
    if (spte::is_leaf(old_spte, level)) {
      // [P1] makes removal return -EIO; the void [B] hook bugs the VM
      // itself, so "this removal failed" is "the VM became bugged here".
      const bool was_bugged = kvm_.bugged();
      remove_external_spte(gfn, level, old_spte);
      return !was_bugged && kvm_.bugged() ? -EIO : 0;
    }
    // A removed table's S-EPT page (the single-hook design): the child sp
    // was already handed to call_rcu, so it is only still there because the
    // caller holds the RCU read lock.
    MmuPage* child = spte_to_child_sp(pool_, old_spte);
    return tdx_sept_reclaim_private_spt(child->external_spt);
  }
  if (kvm_bug_on(!is_present, kvm_, Site::tdx_set_not_present)) return -EIO;
  if (!spte::is_last(new_spte, level)) {
    MmuPage* child = spte_to_child_sp(pool_, new_spte);
    if (kvm_bug_on(!child || !child->external_spt.valid() || child->role.level != lower(level) ||
                       child->gfn != gfn,
                   kvm_, Site::external_spt_null))
      return -EIO;
    return link_external_spt(gfn, level, child->external_spt);
  }
  return set_external_spte(gfn, level, new_spte);
}

// ---- the TDX-side pool ----------------------------------------------------------

std::vector<Pfn>& TdxOps::pool_for(int vcpu) {
  if (vcpu < 0) return vm_pool_;
  if (static_cast<size_t>(vcpu) >= vcpu_pool_.size()) vcpu_pool_.resize(static_cast<size_t>(vcpu) + 1);
  return vcpu_pool_[static_cast<size_t>(vcpu)];
}

int TdxOps::topup_external_fault_cache(int vcpu, int min) {
  std::lock_guard g(pool_mu_);
  std::vector<Pfn>& p = pool_for(vcpu);
  while (static_cast<int>(p.size()) < min) {
    const Pfn pfn = pool_.alloc(PageOwner::TdxPool);
    if (!pfn.valid()) return -ENOMEM;
    p.push_back(pfn);
  }
  return 0;
}

Pfn TdxOps::alloc_external_fault_cache(int vcpu) {
  std::lock_guard g(pool_mu_);
  std::vector<Pfn>& p = pool_for(vcpu);
  // The VM's pool serves splits, which run with mmu_lock dropped and may
  // allocate: the take tops the pool up itself, under the same hold. Topped
  // up under one hold and taken under another (the what-if), two splits at
  // once both see the one page the first top-up left, and the second finds
  // it gone.
  if (vcpu < 0 && p.empty() && !split_pool_topup_apart_) {
    const Pfn fresh = pool_.alloc(PageOwner::TdxPool);
    if (!fresh.valid()) return kInvalidPfn;
    p.push_back(fresh);
  }
  // An empty pool is a top-up bug: the fault path cannot allocate here.
  if (warn_on_once(p.empty(), kvm_, Site::tdx_pool_empty)) return kInvalidPfn;
  const Pfn pfn = p.back();
  p.pop_back();
  // The sp owns it from now on; the MMU frees it with the sp.
  pool_.transfer(pfn, PageOwner::TdxPool, PageOwner::SeptPage);
  stats_.pool_handouts++;
  return pfn;
}

void TdxOps::free_external_pool() {
  std::lock_guard g(pool_mu_);
  for (auto& p : vcpu_pool_) {
    for (Pfn pfn : p) pool_.free(pfn, PageOwner::TdxPool);
    p.clear();
  }
  for (Pfn pfn : vm_pool_) pool_.free(pfn, PageOwner::TdxPool);
  vm_pool_.clear();
}

}  // namespace mirrormmu::tdx
