// The upstream layout ([B], v6.19): four hooks.
//  - link_external_spt / set_external_spte from set_external_spte_present(),
//    under the shared lock, with the mirror SPTE frozen around the hook;
//  - remove_external_spte after tdp_mmu_set_spte() and per child in
//    handle_removed_pt(), under the exclusive lock, leaves only;
//  - free_external_spt once a removed table's children are all gone.
#include <cerrno>

#include "mmu/designs/designs.h"
#include "mmu/tdp_mmu.h"
#include "spte/spte.h"

namespace mirrormmu {

namespace {

using namespace spte;

class BaselineDesign final : public HookDesign {
 public:
  std::string_view name() const override { return "baseline"; }

  int set_spte_atomic_mirror(TdpMmu& mmu, TdpIter& iter, uint64_t new_spte) override {
    return set_external_spte_present(mmu, iter, new_spte);
  }

  void after_set_spte_mirror(TdpMmu& mmu, Gfn gfn, uint64_t old_spte, uint64_t new_spte,
                             PgLevel level) override {
    // The exclusive path never installs present mirror SPTEs in [B].
    kvm_bug_on(is_shadow_present(new_spte), mmu.kvm(), Site::set_spte_mirror_present);
    remove_external_spte(mmu, gfn, old_spte, level);
  }

  void removed_child_mirror(TdpMmu& mmu, Gfn gfn, uint64_t old_spte, PgLevel level,
                            bool shared) override {
    remove_external_spte(mmu, gfn, old_spte, level);
  }

  void removed_pt_mirror(TdpMmu& mmu, MmuPage& sp) override {
    const int r = mmu.external()->free_external_spt(sp.gfn, sp.role.level, sp.external_spt);
    note(mmu, HookKind::FreeExternalSpt, sp.gfn, sp.role.level, r);
    // Leak the page on failure: it may still be encrypted with the TD's key
    // or owned by the TDX module, and the host must never touch it.
    if (warn_on_once(r != 0, mmu.kvm(), Site::free_external_spt_failed)) sp.external_spt = kInvalidPfn;
  }

 private:
  static void note(TdpMmu& mmu, HookKind k, Gfn gfn, PgLevel level, int r) {
    if (MmuObserver* o = mmu.observer()) o->on_external_hook(k, gfn, level, r);
  }

  // Non-leaf mirror SPTEs reach here from root zaps and are ignored on
  // purpose: handle_removed_pt() takes care of their external side.
  static void remove_external_spte(TdpMmu& mmu, Gfn gfn, uint64_t old_spte, PgLevel level) {
    if (!is_leaf(old_spte, level)) return;
    sync::assert_held_write(mmu.mmu_lock(), mmu.kvm());
    mmu.external()->remove_external_spte(gfn, level, old_spte);
    note(mmu, HookKind::RemoveExternalSpte, gfn, level, 0);
  }

  static int set_external_spte_present(TdpMmu& mmu, TdpIter& iter, uint64_t new_spte) {
    BugTracker& kvm = mmu.kvm();
    // [B] warns but carries on; the cmpxchg below then fails or succeeds on
    // its own terms.
    kvm_bug_on(is_shadow_present(iter.old_spte), kvm, Site::external_old_present);

    // Freeze first: until the external update is done, concurrent faults must
    // neither see the new entry nor descend under it, and a child S-EPT page
    // must never be linked before its parent entry exists.
    if (!sync::cmpxchg_spte(iter.sptep, iter.old_spte, kFrozen)) return -EBUSY;

    int ret;
    HookKind kind;
    if (is_last(new_spte, iter.level)) {
      kind = HookKind::SetExternalSpte;
      ret = mmu.external()->set_external_spte(iter.gfn, iter.level, new_spte);
    } else {
      kind = HookKind::LinkExternalSpt;
      MmuPage* child = spte_to_child_sp(mmu.pool(), new_spte);
      warn_on_once(child->role.level != lower(iter.level) || child->gfn != iter.gfn, kvm,
                   Site::link_child_mismatch);
      if (kvm_bug_on(!child->external_spt.valid(), kvm, Site::external_spt_null))
        ret = -EIO;
      else
        ret = mmu.external()->link_external_spt(iter.gfn, iter.level, child->external_spt);
    }
    note(mmu, kind, iter.gfn, iter.level, ret);
    // Nobody else writes a frozen entry, so plain stores finish the update:
    // back to exactly the old value on failure, the new value on success.
    sync::write_spte(iter.sptep, ret ? iter.old_spte : new_spte);
    return ret;
  }
};

}  // namespace

std::unique_ptr<HookDesign> make_baseline_design() { return std::make_unique<BaselineDesign>(); }

}  // namespace mirrormmu
