// Write-protection for dirty logging.
#include "mmu/tdp_mmu.h"
#include "spte/spte.h"

namespace mirrormmu {

using namespace spte;

bool TdpMmu::kvm_tdp_mmu_wrprot_slot(Gfn start, Gfn end, PgLevel min_level) {
  sync::assert_held_read(mmu_lock_, kvm_);
  bool spte_set = false;
  // Private memory cannot be dirty-logged: only direct roots.
  for (MmuPage* root : roots_snapshot(kDirectRoots)) {
    sync::RcuReadGuard rcu;
    for (TdpIter iter(pool_, root, min_level, start, kvm_gfn_root_bits(root));
         iter.valid && iter.gfn < end; iter.next()) {
    retry:
      if (tdp_mmu_iter_cond_resched(iter, false, true)) continue;
      if (!is_shadow_present(iter.old_spte) || !is_last(iter.old_spte, iter.level) ||
          !is_writable(iter.old_spte))
        continue;
      if (tdp_mmu_set_spte_atomic(iter, iter.old_spte & ~kWritable)) goto retry;
      spte_set = true;
    }
    kvm_tdp_mmu_put_root(root);
  }
  return spte_set;
}

void TdpMmu::kvm_tdp_mmu_clear_dirty_pt_masked(Gfn gfn_base, uint64_t mask) {
  sync::assert_held_write(mmu_lock_, kvm_);
  for (MmuPage* root : roots_snapshot(kDirectRoots)) {
    sync::RcuReadGuard rcu;
    const Gfn end = gfn_base + 64;
    for (TdpIter iter(pool_, root, PgLevel::k4K, gfn_base, kvm_gfn_root_bits(root));
         iter.valid && iter.gfn < end; iter.next()) {
      if (iter.level > PgLevel::k4K || !(mask & (1ull << (iter.gfn - gfn_base)))) continue;
      if (!is_leaf(iter.old_spte, iter.level) || !is_writable(iter.old_spte)) continue;
      tdp_mmu_iter_set_spte(iter, iter.old_spte & ~(kWritable | kDirty));
    }
    kvm_tdp_mmu_put_root(root);
  }
}

}  // namespace mirrormmu
