// SPDX-License-Identifier: MIT
// NX huge pages: the iTLB multihit workaround. With it on, no huge leaf of
// a direct root is executable; an instruction fetch from one maps 4K under
// a table (nx_huge_page_disallowed), which the recovery worker zaps again
// now and then so the region can go back to a huge mapping.
#include "mmu/tdp_mmu.h"
#include "spte/spte.h"

namespace mirrormmu {

using namespace spte;

void TdpMmu::track_possible_nx_huge_page(MmuPage* sp) {
  if (sp->nx_tracked) return;
  sp->nx_tracked = true;
  possible_nx_huge_pages_.push_back(sp);
  stats_.nx_lpage_splits.fetch_add(1, std::memory_order_relaxed);
}

void TdpMmu::untrack_possible_nx_huge_page(MmuPage* sp) {
  if (!sp->nx_tracked) return;
  sp->nx_tracked = false;
  std::erase(possible_nx_huge_pages_, sp);
  stats_.nx_lpage_splits.fetch_sub(1, std::memory_order_relaxed);
}

MmuPage* TdpMmu::pop_possible_nx_huge_page() {
  std::lock_guard g(pages_lock_);
  if (possible_nx_huge_pages_.empty()) return nullptr;
  MmuPage* sp = possible_nx_huge_pages_.front();
  warn_on_once(!sp->nx_huge_page_disallowed, kvm_, Site::nx_untracked_sp);
  sp->nx_huge_page_disallowed = false;
  untrack_possible_nx_huge_page(sp);
  return sp;
}

void TdpMmu::disallowed_hugepage_adjust(KvmPageFault& f, uint64_t spte, PgLevel cur_level) const {
  if (cur_level > PgLevel::k4K && cur_level == f.goal_level && is_shadow_present(spte) && !is_large(spte) &&
      spte_to_child_sp(pool_, spte)->nx_huge_page_disallowed) {
    // Keep the fault's 4K frame in the pfn as the lower level needs it.
    const uint64_t page_mask = pages_per_hpage(cur_level) - pages_per_hpage(lower(cur_level));
    f.pfn = Pfn{f.pfn.v | (f.gfn.v & page_mask)};
    f.goal_level = lower(cur_level);
  }
}

// Only RCU keeps sp readable: another thread may have zapped or replaced
// the entry since sp was taken off the list. Zap only an entry that still
// points at sp's table; a frozen or replaced one is someone else's. Non-leaf
// entries have no bits the CPU or a lockless writer changes, so a failed
// cmpxchg means the entry went elsewhere, never that sp is still there.
bool TdpMmu::kvm_tdp_mmu_zap_possible_nx_huge_page(MmuPage* sp) {
  sync::assert_held_read(mmu_lock_, kvm_);
  if (warn_on_once(sp->ptep == nullptr || sp->parent == nullptr, kvm_, Site::nx_zap_root)) return false;
  const uint64_t old_spte = sync::read_spte(sp->ptep);
  if (!is_shadow_present(old_spte) || is_large(old_spte) || to_pfn(old_spte) != sp->spt_pfn) return false;
  const PgLevel level = higher(sp->role.level);
  uint64_t seen = old_spte;
  while (!sync::cmpxchg_spte(sp->ptep, seen, kNonPresent)) {
    // Only a lost cmpxchg the model injects fails with the entry unchanged.
    if (seen != old_spte) return false;
  }
  handle_changed_spte(sp->parent, sp->gfn, old_spte, kNonPresent, level, true);
  return true;
}

}  // namespace mirrormmu
