// SPDX-License-Identifier: MIT
// tdx.c of the merged layer (kvm-x86/linux 09c6f74ecb86, June 2026): the
// two hooks, set_external_spte = tdx_sept_set_private_spte() and
// free_external_spt = tdx_sept_free_private_spt(), with the checks the MMU
// core used to make. hugepage-v5 adds the RFC v5 split (a present->present
// change) and 2M leaves; upstream-rcu reclaims a removed table's S-EPT page
// through the set hook (seed 000, option 2).
//
// The dispatcher's comment in tdx.c, in short: non-present -> present (leaf
// or table) runs under the shared lock, where BUSY is an answer the fault
// retries (under the exclusive lock it would end in handle_changed_spte()'s
// KVM_BUG_ON); present -> non-present needs the write lock (lockdep, and
// TDX_BUG_ON from a concurrent BLOCK/TRACK/REMOVE otherwise).
#include <cerrno>

#include "base/running_vcpu.h"
#include "mmu/mmu_page.h"
#include "mmu/tdp_iter.h"
#include "spte/spte.h"
#include "tdx/tdx_ops.h"

namespace mirrormmu::tdx {

bool TdxOps::merged_layout() const {
  return layout_ == ExternalLayout::Merged || layout_ == ExternalLayout::MergedHuge ||
         layout_ == ExternalLayout::MergedReclaimViaSet;
}

// The running vCPU's PAMT cache. [DPAMT v6] finds it through
// kvm_get_running_vcpu() and bugs the VM without one: every mapping hook
// runs in a vCPU's context (a fault, or KVM_TDX_INIT_MEM_REGION).
PamtCache* TdxOps::tdx_running_pamt_cache() {
  if (!dpamt()) return &vm_pamt_cache_;  // never used: get/put are no-ops
  const int vcpu = kvm_get_running_vcpu();
  if (kvm_bug_on(vcpu < 0, kvm_, Site::tdx_no_running_vcpu)) return nullptr;
  return &pamt_cache_for(vcpu);
}

int TdxOps::tdx_sept_map_nonleaf_spte(Gfn gfn, PgLevel level, uint64_t new_spte) {
  const MmuPage* sp = spte_to_child_sp(pool_, new_spte);
  if (kvm_bug_on(!sp || !sp->external_spt.valid() || sp->role.level != lower(level) || sp->gfn != gfn, kvm_,
                 Site::external_spt_null))
    return -EIO;
  PamtCache* cache = tdx_running_pamt_cache();
  if (!cache) return -EIO;
  if (int err = tdx_pamt_get(sp->external_spt, PgLevel::k4K, *cache)) return err;
  const Ret r = module_.tdh_mem_sept_add(gfn.gpa(), tdx_level(level), sp->external_spt);
  if (r.ok()) return 0;
  tdx_pamt_put(sp->external_spt, PgLevel::k4K);
  if (is_busy(r.status)) return -EBUSY;
  tdx_bug_on(r.status, kvm_, Site::tdh_mem_sept_add);
  return -EIO;
}

int TdxOps::tdx_sept_map_leaf_spte(Gfn gfn, PgLevel level, uint64_t new_spte) {
  const bool runnable = state_ == TdState::Runnable;
  // "TODO: handle large pages": 4K only, until hugepage-v5 maps 2M once the
  // TD runs (the build is measured page by page).
  const PgLevel max = layout_ == ExternalLayout::MergedHuge && runnable ? PgLevel::k2M : PgLevel::k4K;
  if (kvm_bug_on(level > max, kvm_, Site::tdx_set_level)) return -EIO;
  warn_on_once((new_spte & spte::kRwx) != spte::kRwx, kvm_, Site::tdx_set_not_rwx);
  if (!runnable && kvm_bug_on(pre_fault_allowed_ || !page_add_src_.valid(), kvm_, Site::tdx_page_add_state))
    return -EIO;
  const Pfn pfn = spte::to_pfn(new_spte);
  PamtCache* cache = tdx_running_pamt_cache();
  if (!cache) return -EIO;
  if (int err = tdx_pamt_get(pfn, level, *cache)) return err;
  const Ret r = runnable ? module_.tdh_mem_page_aug(gfn.gpa(), tdx_level(level), pfn)
                         : module_.tdh_mem_page_add(gfn.gpa(), tdx_level(level), pfn, page_add_src_);
  if (r.ok()) return 0;
  // Any failure gives the reference back, BUSY included.
  tdx_pamt_put(pfn, level);
  if (is_busy(r.status)) return -EBUSY;
  tdx_bug_on(r.status, kvm_, runnable ? Site::tdh_mem_page_aug : Site::tdh_mem_page_add);
  return -EIO;
}

int TdxOps::tdx_sept_set_private_spte(Gfn gfn, uint64_t old_spte, uint64_t new_spte, PgLevel level) {
  sync::assert_held(mmu_lock_, kvm_);
  const bool was_present = spte::is_shadow_present(old_spte);
  const bool is_present = spte::is_shadow_present(new_spte);
  if (was_present && is_present && layout_ == ExternalLayout::MergedHuge) {
    // RFC v5 patch 39: a present -> present change is a demotion.
    MmuPage* child = spte::is_last(new_spte, level) ? nullptr : spte_to_child_sp(pool_, new_spte);
    if (kvm_bug_on(!child || !child->external_spt.valid(), kvm_, Site::external_spt_null)) return -EIO;
    return tdx_sept_split_private_spte(gfn, level, old_spte, child->external_spt);
  }
  if (was_present && !spte::is_last(old_spte, level) && layout_ == ExternalLayout::MergedReclaimViaSet) {
    // Option 2: the table was handed to call_rcu already; it is only still
    // there because the caller holds the RCU read lock.
    MmuPage* child = spte_to_child_sp(pool_, old_spte);
    if (!child) return -EIO;
    tdx_sept_free_private_spt(*child);
    return 0;
  }
  // Whatever the new value: only a leaf is ever removed, and the S-EPT
  // cannot change a present entry in place (a present -> present change
  // reaching here is a removal the caller did not mean).
  if (was_present) return tdx_sept_remove_leaf_spte(gfn, level, old_spte);
  if (kvm_bug_on(!is_present, kvm_, Site::tdx_set_not_present)) return -EIO;
  if (!spte::is_last(new_spte, level)) return tdx_sept_map_nonleaf_spte(gfn, level, new_spte);
  return tdx_sept_map_leaf_spte(gfn, level, new_spte);
}

int TdxOps::tdx_sept_remove_leaf_spte(Gfn gfn, PgLevel level, uint64_t old_spte) {
  const PgLevel max = layout_ == ExternalLayout::MergedHuge ? PgLevel::k2M : PgLevel::k4K;
  return tdx_sept_remove_private_spte(gfn, level, old_spte, max);
}

// tdx_sept_free_private_spt(): only after the HKID is gone (KVM does not
// zap mirror page tables while the TD is alive). TDH.PHYMEM.PAGE.RECLAIM
// guarantees no reader is left, so the page is freed now, not after a grace
// period; if it cannot be taken back it is leaked on purpose. Either way
// the sp no longer points at it.
void TdxOps::tdx_sept_free_private_spt(MmuPage& sp) {
  const Pfn page = sp.external_spt;
  sp.external_spt = kInvalidPfn;
  sp.external_linked = false;
  if (!page.valid()) return;
  if (kvm_bug_on(module_.hkid_assigned(), kvm_, Site::tdx_free_hkid_assigned) || tdx_reclaim_page(page) != 0) {
    sp.external_leaked = true;
    stats_.leaked_pages++;
    return;
  }
  tdx_pamt_put(page, PgLevel::k4K);
  pool_.free(page, PageOwner::SeptPage);
}

void TdxOps::free_external_spt(MmuPage& sp) { tdx_sept_free_private_spt(sp); }

}  // namespace mirrormmu::tdx
