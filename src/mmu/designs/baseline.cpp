// SPDX-License-Identifier: MIT
// The upstream layout ([B], v6.19): four hooks.
//  - link_external_spt / set_external_spte from set_external_spte_present(),
//    under the shared lock, with the mirror SPTE frozen around the hook;
//  - remove_external_spte after tdp_mmu_set_spte() and per child in
//    handle_removed_pt(), under the exclusive lock, leaves only;
//  - free_external_spt once a removed table's children are all gone.
// No way to split a private huge page: mirror leaves stay 4K.
#include <cerrno>

#include "mmu/designs/design_util.h"
#include "mmu/designs/designs.h"

namespace mirrormmu {

namespace {

using namespace spte;
using namespace design_util;

class BaselineDesign final : public HookDesign {
 public:
  std::string_view name() const override { return "baseline"; }
  std::string_view mirror_huge_refusal() const override {
    return "baseline ([B]) has no split path for the mirror: tdp_mmu_set_spte() bugs the VM on a "
           "present mirror SPTE and TDX maps and removes only 4K";
  }

  int set_spte_atomic_mirror(TdpMmu& mmu, TdpIter& iter, uint64_t new_spte) override {
    BugTracker& kvm = mmu.kvm();
    // Under the shared lock a mirror SPTE can only be made present; zaps of
    // private memory need the exclusive lock (BLOCK/TRACK/REMOVE).
    if (kvm_bug_on(!is_shadow_present(new_spte), kvm, Site::atomic_mirror_not_present)) return -EBUSY;
    // [B] warns but carries on; the cmpxchg then fails or succeeds on its
    // own terms.
    kvm_bug_on(is_shadow_present(iter.old_spte), kvm, Site::external_old_present);
    const uint64_t old_spte = iter.old_spte;
    if (is_last(new_spte, iter.level)) {
      const int r = freeze_and_propagate(iter, new_spte, [&] {
        const int r = mmu.external()->set_external_spte(iter.gfn, iter.level, new_spte);
        note(mmu, HookKind::SetExternalSpte, iter.gfn, iter.level, r);
        return r;
      });
      return finish_atomic(mmu, iter, old_spte, new_spte, r);
    }
    const int r = freeze_and_propagate(iter, new_spte, [&] {
      MmuPage* child = child_for_link(mmu, iter, new_spte);
      const int r = child ? mmu.external()->link_external_spt(iter.gfn, iter.level, child->external_spt) : -EIO;
      note(mmu, HookKind::LinkExternalSpt, iter.gfn, iter.level, r);
      if (r == 0) child->external_linked = true;
      return r;
    });
    return finish_atomic(mmu, iter, old_spte, new_spte, r);
  }

  void after_set_spte_mirror(TdpMmu& mmu, Gfn gfn, uint64_t old_spte, uint64_t new_spte,
                             PgLevel level) override {
    // The exclusive path never installs present mirror SPTEs in [B].
    kvm_bug_on(is_shadow_present(new_spte), mmu.kvm(), Site::set_spte_mirror_present);
    remove_leaf(mmu, gfn, old_spte, level);
  }

  void removed_child_mirror(TdpMmu& mmu, Gfn gfn, uint64_t old_spte, PgLevel level, bool shared) override {
    kvm_bug_on(shared, mmu.kvm(), Site::removed_pt_mirror_shared);
    remove_leaf(mmu, gfn, old_spte, level);
  }

  void removed_pt_mirror(TdpMmu& mmu, MmuPage& sp) override { free_table(mmu, sp); }
};

}  // namespace

std::unique_ptr<HookDesign> make_baseline_design() { return std::make_unique<BaselineDesign>(); }

}  // namespace mirrormmu
