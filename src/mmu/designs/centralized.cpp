// SPDX-License-Identifier: MIT
// The centralized layout ([P1] patches 05-36 and Rick's 17-patch series,
// 07/17 "Centralize updates to present external PTEs", 08/17 "Drop
// link_external_spt"):
//  - one set hook, set_external_spte(gfn, old, new, level), for every change
//    of a mirror SPTE; TDX dispatches on the transition (split, remove,
//    link, map), so the MMU knows nothing of TDX's splitting rules;
//  - the freeze lives in tdp_mmu_set_spte_atomic(): __tdp_mmu_set_spte_atomic
//    is a plain cmpxchg again;
//  - __handle_changed_spte() returns the hook's error and stats are updated
//    after the hook (Yan's stats fix), so a failed update counts nothing;
//  - the only special case is a table being removed: its children are
//    forwarded one by one by handle_removed_pt, then the S-EPT page goes
//    through the void reclaim_external_spt hook.
#include <cerrno>

#include "mmu/designs/design_util.h"
#include "mmu/designs/designs.h"

namespace mirrormmu {

namespace {

using namespace spte;
using namespace design_util;

class CentralizedDesign : public HookDesign {
 public:
  std::string_view name() const override { return "centralized-rfc-fixed"; }
  bool supports_mirror_huge() const override { return true; }
  ExternalLayout external_layout() const override { return ExternalLayout::CentralizedRfc; }

  int set_spte_atomic_mirror(TdpMmu& mmu, TdpIter& iter, uint64_t new_spte) override {
    // Only a non-present mirror SPTE may be made present under the shared
    // lock; anything else would need a BLOCK that cannot be undone.
    if (kvm_bug_on(!is_shadow_present(new_spte), mmu.kvm(), Site::atomic_mirror_not_present)) return -EBUSY;
    if (kvm_bug_on(is_shadow_present(iter.old_spte), mmu.kvm(), Site::external_old_present)) return -EBUSY;
    const uint64_t old_spte = iter.old_spte;
    const int r = freeze_and_propagate(
        iter, new_spte, [&] { return set_external(mmu, iter.gfn, old_spte, new_spte, iter.level); });
    return finish_atomic(mmu, iter, old_spte, new_spte, r);
  }

  void after_set_spte_mirror(TdpMmu& mmu, Gfn gfn, uint64_t old_spte, uint64_t new_spte,
                             PgLevel level) override {
    changed(mmu, gfn, old_spte, new_spte, level);
  }

  void removed_child_mirror(TdpMmu& mmu, Gfn gfn, uint64_t old_spte, PgLevel level, bool shared) override {
    kvm_bug_on(shared, mmu.kvm(), Site::removed_pt_mirror_shared);
    changed(mmu, gfn, old_spte, kFrozen, level);
  }

  void removed_pt_mirror(TdpMmu& mmu, MmuPage& sp) override {
    if (never_donated(sp)) return;
    // Void: a page the backend cannot take back is leaked by the backend.
    mmu.external()->reclaim_external_spt(sp.gfn, sp);
    note(mmu, HookKind::ReclaimExternalSpt, sp.gfn, sp.role.level, sp.external_spt.valid() ? 0 : -EIO);
    sp.external_linked = false;
  }

 protected:
  // handle_changed_spte() -> KVM_BUG_ON(__handle_changed_spte()): under the
  // exclusive lock nothing can be retried.
  virtual void changed(TdpMmu& mmu, Gfn gfn, uint64_t old_spte, uint64_t new_spte, PgLevel level) {
    if (!forwards_change(old_spte, new_spte, level)) return;
    kvm_bug_on(set_external(mmu, gfn, old_spte, new_spte, level) != 0, mmu.kvm(), Site::set_external_spte_failed);
  }

  static int set_external(TdpMmu& mmu, Gfn gfn, uint64_t old_spte, uint64_t new_spte, PgLevel level) {
    const int r = mmu.external()->set_external_spte(gfn, old_spte, new_spte, level);
    note(mmu, HookKind::SetExternalSpte, gfn, level, r);
    // A table linked (SEPT.ADD) or created by a split (DEMOTE): its S-EPT
    // page is the module's now.
    if (r == 0 && is_shadow_present(new_spte) && !is_last(new_spte, level))
      spte_to_child_sp(mmu.pool(), new_spte)->external_linked = true;
    return r;
  }
};

// Option 2 of the seed thread: the reclaim of a removed table's S-EPT page
// also goes through the set hook, as (old table, new) from
// handle_changed_spte, after handle_removed_pt() has already queued the
// table for call_rcu. That is only safe if the RCU read lock is held across
// the whole handle_changed_spte(); the design asserts it (RCU_LOCKDEP_WARN)
// and the RCU callback warns if it ever frees a table whose S-EPT page was
// not reclaimed yet.
class SingleHookDesign final : public CentralizedDesign {
 public:
  std::string_view name() const override { return "single-hook"; }

  void removed_pt_mirror(TdpMmu&, MmuPage&) override {}

 protected:
  void changed(TdpMmu& mmu, Gfn gfn, uint64_t old_spte, uint64_t new_spte, PgLevel level) override {
    const bool table_removed = is_shadow_present(old_spte) && !is_last(old_spte, level) &&
                               !forwards_change(old_spte, new_spte, level);
    if (!table_removed) return CentralizedDesign::changed(mmu, gfn, old_spte, new_spte, level);
    warn_on_once(!sync::rcu_read_lock_held(), mmu.kvm(), Site::reclaim_without_rcu);
    MmuPage* child = spte_to_child_sp(mmu.pool(), old_spte);
    if (child && never_donated(*child)) return;
    const int r = mmu.external()->set_external_spte(gfn, old_spte, new_spte, level);
    note(mmu, HookKind::SetExternalSpte, gfn, level, r);
    if (child) child->external_linked = false;
  }
};

// [P1] as first posted (RFC v5), before Yan Zhao's fix of 2026-02-13:
// __handle_changed_spte() updated the page stats (and traced) *before*
// calling set_external_spte, so a map that the TDX module refused (BUSY, a
// fault that simply retries) was counted as a leaf that never got installed.
// Kept as a design so the checker and the explorer can show what the fix
// fixed.
class CentralizedRfcDesign final : public CentralizedDesign {
 public:
  std::string_view name() const override { return "centralized-rfc"; }

  int set_spte_atomic_mirror(TdpMmu& mmu, TdpIter& iter, uint64_t new_spte) override {
    const bool leaf = is_last(new_spte, iter.level);
    // The stats of the change, counted before the hook...
    if (leaf) mmu.kvm_update_page_stats(iter.level, 1);
    const int r = CentralizedDesign::set_spte_atomic_mirror(mmu, iter, new_spte);
    // ...and not taken back when it fails. (On success the MMU counts the
    // change itself, so the early count is handed back here.)
    if (leaf && r == 0) mmu.kvm_update_page_stats(iter.level, -1);
    return r;
  }
};

}  // namespace

std::unique_ptr<HookDesign> make_centralized_rfc_design() { return std::make_unique<CentralizedRfcDesign>(); }

std::unique_ptr<HookDesign> make_centralized_design() { return std::make_unique<CentralizedDesign>(); }
std::unique_ptr<HookDesign> make_single_hook_design() { return std::make_unique<SingleHookDesign>(); }

}  // namespace mirrormmu
