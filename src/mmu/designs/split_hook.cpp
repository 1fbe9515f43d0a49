// SPDX-License-Identifier: MIT
// Yan Zhao's RFC ([HP], "Invoke split_external_spt hook with exclusive
// mmu_lock"): the [B] hooks plus a dedicated split_external_spt, called from
// tdp_mmu_set_spte() when a huge mirror leaf becomes a table. The MMU core
// bugs the VM on a failed split on top of whatever the backend did (Yan:
// "error handling in the KVM MMU core, which returns void"; Rick: the
// backend already bugs it) — both sites show up in a run.
#include <cerrno>

#include "mmu/designs/design_util.h"
#include "mmu/designs/designs.h"

namespace mirrormmu {

namespace {

using namespace spte;
using namespace design_util;

class SplitHookDesign final : public HookDesign {
 public:
  explicit SplitHookDesign(std::unique_ptr<HookDesign> base) : base_(std::move(base)) {}
  std::string_view name() const override { return "split-hook"; }
  bool supports_mirror_huge() const override { return true; }

  int set_spte_atomic_mirror(TdpMmu& mmu, TdpIter& iter, uint64_t new_spte) override {
    return base_->set_spte_atomic_mirror(mmu, iter, new_spte);
  }

  // The exclusive transitions the external tree supports: a present leaf or
  // table going away, and a huge leaf becoming a table (split).
  void after_set_spte_mirror(TdpMmu& mmu, Gfn gfn, uint64_t old_spte, uint64_t new_spte,
                             PgLevel level) override {
    if (!is_shadow_present(new_spte)) {
      remove_leaf(mmu, gfn, old_spte, level);
    } else if (is_leaf(old_spte, level) && !is_last(new_spte, level)) {
      split_external_spt(mmu, gfn, old_spte, new_spte, level);
    } else {
      kvm_bug_on(true, mmu.kvm(), Site::set_spte_mirror_unsupported);
    }
  }

  void removed_child_mirror(TdpMmu& mmu, Gfn gfn, uint64_t old_spte, PgLevel level, bool shared) override {
    base_->removed_child_mirror(mmu, gfn, old_spte, level, shared);
  }

  void removed_pt_mirror(TdpMmu& mmu, MmuPage& sp) override { base_->removed_pt_mirror(mmu, sp); }

 private:
  static void split_external_spt(TdpMmu& mmu, Gfn gfn, uint64_t old_spte, uint64_t new_spte, PgLevel level) {
    MmuPage* child = spte_to_child_sp(mmu.pool(), new_spte);
    if (kvm_bug_on(!child || !child->external_spt.valid(), mmu.kvm(), Site::external_spt_null)) return;
    const int r = mmu.external()->split_external_spt(gfn, level, old_spte, child->external_spt);
    note(mmu, HookKind::SplitExternalSpt, gfn, level, r);
    if (!kvm_bug_on(r != 0, mmu.kvm(), Site::split_external_spt_failed)) child->external_linked = true;
  }

  std::unique_ptr<HookDesign> base_;
};

}  // namespace

std::unique_ptr<HookDesign> make_split_hook_design() {
  return std::make_unique<SplitHookDesign>(make_baseline_design());
}

}  // namespace mirrormmu
