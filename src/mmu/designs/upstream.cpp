// SPDX-License-Identifier: MIT
// The merged layer (kvm.git, June 2026: Sean Christopherson's and Rick
// Edgecombe's MMU refactors as reposted by Yan Zhao, "KVM: TDX: Drop
// kvm_x86_ops.link_external_spt()" ... "Move external page table freeing to
// TDX code"), and the two layouts the list asks of it.
//
// What the MMU core does for a mirror root:
//  - tdp_mmu_set_spte_atomic() freezes the entry, runs __handle_changed_spte()
//    (which propagates the change through set_external_spte), then writes
//    the new value, or the old one back if the hook failed. To-present and
//    atomic zaps alike: the core no longer refuses a shared-lock zap, TDX's
//    remove path asserts the write lock itself.
//  - tdp_mmu_set_spte() (exclusive) propagates from handle_changed_spte()
//    too, KVM_BUG_ON() on failure: there is nothing to retry.
//  - handle_removed_pt() freezes each child (its change is propagated like
//    any other) and hands the table to free_external_spt(kvm, sp), which is
//    void: TDX RECLAIMs, frees the page at once and clears external_spt.
//    No KVM_BUG_ON(shared) any more.
#include <cerrno>

#include "mmu/designs/design_util.h"
#include "mmu/designs/designs.h"
#include "sync/rcu.h"

namespace mirrormmu {

namespace {

using namespace spte;
using namespace design_util;

class UpstreamDesign : public HookDesign {
 public:
  std::string_view name() const override { return "upstream"; }
  std::string_view mirror_huge_refusal() const override {
    return "upstream (the merged layer) maps private memory at 4K only: tdx_sept_map_leaf_spte() "
           "bugs the VM on a larger level and TDX has no split path yet (see hugepage-v5)";
  }
  ExternalLayout external_layout() const override { return ExternalLayout::Merged; }

  int set_spte_atomic_mirror(TdpMmu& mmu, TdpIter& iter, uint64_t new_spte) override {
    const uint64_t old_spte = iter.old_spte;
    // Until set_external_spte is done concurrent walkers must neither see
    // the new value nor descend under it.
    if (!sync::cmpxchg_spte(iter.sptep, iter.old_spte, kFrozen)) return -EBUSY;
    const int r = mmu.__handle_changed_spte(iter.sp(), iter.gfn, old_spte, new_spte, iter.level, true);
    // Only the freezer writes a frozen entry: plain stores finish it.
    sync::write_spte(iter.sptep, r ? old_spte : new_spte);
    return r;
  }

  void after_set_spte_mirror(TdpMmu&, Gfn, uint64_t, uint64_t, PgLevel) override {}
  void removed_child_mirror(TdpMmu&, Gfn, uint64_t, PgLevel, bool) override {}

  int propagate_changed_spte(TdpMmu& mmu, Gfn gfn, uint64_t old_spte, uint64_t new_spte, PgLevel level,
                             bool shared) override {
    const int r = mmu.external()->set_external_spte(gfn, old_spte, new_spte, level);
    note(mmu, HookKind::SetExternalSpte, gfn, level, r);
    // A table linked (SEPT.ADD) or made by a split (DEMOTE): the module
    // holds its S-EPT page now.
    if (r == 0 && is_shadow_present(new_spte) && !is_last(new_spte, level))
      spte_to_child_sp(mmu.pool(), new_spte)->external_linked = true;
    return r;
  }

  void removed_pt_mirror(TdpMmu& mmu, MmuPage& sp) override {
    mmu.external()->free_external_spt(sp);
    // Void: the only trace of a failure is the page TDX leaked on purpose.
    note(mmu, HookKind::FreeExternalSpt, sp.gfn, sp.role.level, sp.external_leaked ? -EIO : 0);
  }
};

// Option 2 of seed 000 (Yan Zhao, "Re: [PATCH 07/17] KVM: x86/tdp_mmu:
// Centralize updates to present external PTEs", 2026-04-07) on the merged
// code: no free_external_spt; the removed table's S-EPT page is reclaimed
// through set_external_spte(old table, new) from __handle_changed_spte(),
// after handle_removed_pt() queued the sp for call_rcu. The sp is still
// there only because the caller holds the RCU read lock, which the design
// asserts (RCU_LOCKDEP_WARN).
class UpstreamRcuDesign final : public UpstreamDesign {
 public:
  std::string_view name() const override { return "upstream-rcu"; }
  ExternalLayout external_layout() const override { return ExternalLayout::MergedReclaimViaSet; }

  void removed_pt_mirror(TdpMmu&, MmuPage&) override {}

  int propagate_removed_table(TdpMmu& mmu, Gfn gfn, uint64_t old_spte, uint64_t new_spte, PgLevel level,
                              bool shared) override {
    warn_on_once(!sync::rcu_read_lock_held(), mmu.kvm(), Site::reclaim_without_rcu);
    const int r = mmu.external()->set_external_spte(gfn, old_spte, new_spte, level);
    note(mmu, HookKind::SetExternalSpte, gfn, level, r);
    // The module let go of the page (or it was leaked): the RCU callback may
    // free the sp now. Without the read lock it may have already, which the
    // callback reported; the sp is then kept as a zombie for exactly this.
    spte_to_child_sp(mmu.pool(), old_spte)->external_linked = false;
    return r;
  }
};

// hugepage-v5: the merged layer plus the huge-page patches of "[RFC PATCH v5
// 00/45] TDX: Dynamic PAMT + S-EPT Hugepage" (Sean Christopherson,
// 2026-01-28, rebased by the thread onto the merged hooks): 2M private
// leaves once the TD runs, and a demotion is one more present->present
// change through set_external_spte, which TDX turns into BLOCK, TRACK + kick,
// DEMOTE under the write lock. The MMU refuses a mirror split under the
// shared lock (-EOPNOTSUPP): a failure after the BLOCK would need an
// UNBLOCK, which can itself be BUSY.
class HugepageV5Design final : public UpstreamDesign {
 public:
  std::string_view name() const override { return "hugepage-v5"; }
  bool supports_mirror_huge() const override { return true; }
  ExternalLayout external_layout() const override { return ExternalLayout::MergedHuge; }

  int set_spte_atomic_mirror(TdpMmu& mmu, TdpIter& iter, uint64_t new_spte) override {
    if (is_shadow_present(iter.old_spte) && is_shadow_present(new_spte)) return -EOPNOTSUPP;
    return UpstreamDesign::set_spte_atomic_mirror(mmu, iter, new_spte);
  }
};

}  // namespace

std::unique_ptr<HookDesign> make_upstream_design() { return std::make_unique<UpstreamDesign>(); }
std::unique_ptr<HookDesign> make_upstream_rcu_design() { return std::make_unique<UpstreamRcuDesign>(); }
std::unique_ptr<HookDesign> make_hugepage_v5_design() { return std::make_unique<HugepageV5Design>(); }

}  // namespace mirrormmu
