// SPDX-License-Identifier: MIT
// The SPTE write protocol: the exclusive setter, the atomic (shared) setter,
// change handling and subtree removal.
#include <cerrno>

#include "mmu/tdp_mmu.h"
#include "spte/spte.h"
#include "sync/vthread_locals.h"

namespace mirrormmu {

using namespace spte;

namespace {
// One per thread handling a change, and per virtual thread under the engine.
thread_local const SpteChange* t_current_change = nullptr;
const SpteChange* const kNoChange = nullptr;
[[maybe_unused]] const int g_change_local =
    sync::register_vthread_local(+[]() -> void* { return &t_current_change; }, &kNoChange, sizeof t_current_change);
}  // namespace

const SpteChange* TdpMmu::current_change() { return t_current_change; }

// kvm_tdp_mmu_write_spte(): a plain store unless the old value carries bits
// that hardware or fast-PF may set without mmu_lock; then xchg, and return
// what was really there so a racing Dirty bit is not lost. While someone
// watches, the plain store also learns what it replaced.
uint64_t TdpMmu::kvm_tdp_mmu_write_spte(uint64_t* sptep, uint64_t old_spte, uint64_t new_spte, Gfn gfn,
                                        PgLevel level) {
  if (has_volatile_bits(old_spte) && !cfg_.plain_store_over_volatile) return sync::xchg_spte(sptep, new_spte);
  if (observer_) [[unlikely]] {
    const uint64_t was = sync::write_spte_observed(sptep, new_spte);
    if (lost_update(old_spte, was)) observer_->on_lost_update(gfn, level, old_spte, was, new_spte);
    return old_spte;
  }
  sync::write_spte(sptep, new_spte);
  return old_spte;
}

uint64_t TdpMmu::tdp_mmu_set_spte(MmuPage* sp, uint64_t* sptep, uint64_t old_spte,
                                  uint64_t new_spte, Gfn gfn, PgLevel level) {
  sync::assert_held_write(mmu_lock_, kvm_);
  // Nobody can hold an SPTE frozen while we hold the lock exclusively, so
  // there is never a reason to write or replace FROZEN_SPTE here.
  warn_on_once(is_frozen(old_spte) || is_frozen(new_spte), kvm_, Site::set_frozen);
  old_spte = kvm_tdp_mmu_write_spte(sptep, old_spte, new_spte, gfn, level);
  handle_changed_spte(sp, gfn, old_spte, new_spte, level, false);
  if (sp->is_mirror()) [[unlikely]] design_->after_set_spte_mirror(*this, gfn, old_spte, new_spte, level);
  return old_spte;
}

void TdpMmu::tdp_mmu_iter_set_spte(TdpIter& iter, uint64_t new_spte) {
  warn_on_once(iter.yielded, kvm_, Site::iter_yielded);
  iter.old_spte = tdp_mmu_set_spte(iter.sp(), iter.sptep, iter.old_spte, new_spte, iter.gfn, iter.level);
}

void TdpMmu::handle_changed_spte_failed(MmuPage* sp, Gfn gfn, uint64_t old_spte, uint64_t new_spte,
                                        PgLevel level, bool shared) {
  // The KVM_BUG_ON belongs to the change that failed, for whoever charges
  // sites to transitions.
  const SpteChange c{gfn, level, old_spte, new_spte, shared, sp->is_mirror()};
  const SpteChange* outer = t_current_change;
  if (observer_) t_current_change = &c;
  kvm_bug_on(true, kvm_, Site::set_external_spte_failed);
  t_current_change = outer;
}

int TdpMmu::handle_changed_spte_observed(MmuPage* sp, Gfn gfn, uint64_t old_spte, uint64_t new_spte,
                                         PgLevel level, bool shared) {
  const SpteChange c{gfn, level, old_spte, new_spte, shared, sp->is_mirror()};
  const SpteChange* outer = t_current_change;
  t_current_change = &c;
  const int r = handle_changed_spte_inner(sp, gfn, old_spte, new_spte, level, shared);
  t_current_change = outer;
  observer_->on_spte_change_result(c, r);
  return r;
}

int TdpMmu::handle_changed_spte_inner(MmuPage* sp, Gfn gfn, uint64_t old_spte, uint64_t new_spte,
                                      PgLevel level, bool shared) {
  const bool mirror = sp->is_mirror();
  const bool was_present = is_shadow_present(old_spte);
  const bool is_present = is_shadow_present(new_spte);
  const bool was_leaf = was_present && is_last(old_spte, level);
  const bool is_leaf_now = is_present && is_last(new_spte, level);
  const bool pfn_changed = to_pfn(old_spte) != to_pfn(new_spte);

  warn_on_once(lvl(level) > kRootMaxLevel || lvl(level) < 1, kvm_, Site::changed_spte_bad_level);
  warn_on_once(!gfn_aligned(gfn, level), kvm_, Site::changed_spte_unaligned);

  // A leaf must be zapped (and the TLB flushed) before it may point at a
  // different page; doing otherwise lets the guest keep using the old page
  // through stale translations. The kernel BUG()s here.
  if (was_leaf && is_leaf_now && pfn_changed) kvm_.hit(Site::changed_spte_leaf_pfn);

  if (old_spte == new_spte) return 0;

  if (!was_present && !is_present) {
    if (observer_) [[unlikely]]
      observer_->on_spte_changed({gfn, level, old_spte, new_spte, shared, mirror});
    // Only MMIO SPTEs come and go while non-present; the freeze of a child
    // in handle_removed_pt also lands here.
    warn_on_once(!is_mmio(old_spte, cfg_.mmio_value) && !is_mmio(new_spte, cfg_.mmio_value) &&
                     !is_frozen(new_spte),
                 kvm_, Site::changed_spte_nonpresent);
    return 0;
  }

  // A non-leaf replaced by a leaf or by nothing frees the subtree below it.
  // Non-leaf to another non-leaf is a bug, handled as a removal all the same.
  const bool table_removed = was_present && !was_leaf &&
                             (is_leaf_now || !is_present ||
                              warn_on_once(pfn_changed, kvm_, Site::changed_spte_nonleaf_pfn));
  // The merged layer propagates every other mirror change from here. The
  // stats follow the mirror entry: the atomic setter puts the old value back
  // when the hook fails (a refused map, BUSY, must not count a leaf that was
  // never installed), while under the exclusive lock the new value stays,
  // the VM is bugged, and the stats still describe the tree.
  int r = 0;
  if (mirror && !table_removed) [[unlikely]] {
    r = design_->propagate_changed_spte(*this, gfn, old_spte, new_spte, level, shared);
    if (r && shared) return r;
  }
  if (observer_) [[unlikely]]
    observer_->on_spte_changed({gfn, level, old_spte, new_spte, shared, mirror});
  if (was_leaf != is_leaf_now) kvm_update_page_stats(level, is_leaf_now ? 1 : -1);
  if (table_removed) {
    handle_removed_pt(to_pfn(old_spte), shared);
    // Option 2 of seed 000: the removed table's S-EPT page also goes through
    // the set hook, after handle_removed_pt() has already queued it for
    // call_rcu.
    if (mirror) [[unlikely]]
      r = design_->propagate_removed_table(*this, gfn, old_spte, new_spte, level, shared);
  }
  return r;
}

// The caller has already unlinked the table: nobody can reach it through the
// tree any more, but RCU readers that picked it up earlier may still read it,
// so it is freed only after a grace period. Children are processed in order
// and depth-first, so the external hooks run bottom-up (children before
// their parent), which is what the TDX module requires.
void TdpMmu::handle_removed_pt(Pfn pt_pfn, bool shared) {
  MmuPage* sp = static_cast<MmuPage*>(pool_.page_private(pt_pfn));
  const PgLevel level = sp->role.level;
  const Gfn base_gfn = sp->gfn;
  const bool mirror = sp->is_mirror();

  // tdp_mmu_unlink_sp()
  stats_.tdp_mmu_pages.fetch_sub(1, std::memory_order_relaxed);
  if (sp->nx_huge_page_disallowed.load(std::memory_order_relaxed)) {
    std::lock_guard g(pages_lock_);
    sp->nx_huge_page_disallowed.store(false, std::memory_order_relaxed);
    untrack_possible_nx_huge_page(sp);
  }

  for (int i = 0; i < kSptePerPage; i++) {
    uint64_t* sptep = sp->spt + i;
    const Gfn gfn = base_gfn + uint64_t(i) * pages_per_hpage(level);
    uint64_t old_spte;
    if (shared) {
      // Another thread may hold this child frozen (mid-update through a
      // stale walk). Wait for it to write its final value, then take that:
      // a non-present child is frozen too, so nothing can be installed in
      // the orphaned table behind our back.
      for (;;) {
        old_spte = sync::xchg_spte(sptep, kFrozen);
        if (!is_frozen(old_spte)) break;
        sync::sched_point(sync::PointKind::Yield, sptep);
      }
    } else {
      old_spte = sync::read_spte(sptep);
      if (!is_shadow_present(old_spte)) continue;
      old_spte = kvm_tdp_mmu_write_spte(sptep, old_spte, kFrozen, gfn, level);
    }
    handle_changed_spte(sp, gfn, old_spte, kFrozen, level, shared);
    if (mirror) [[unlikely]] design_->removed_child_mirror(*this, gfn, old_spte, level, shared);
  }

  if (mirror) [[unlikely]] design_->removed_pt_mirror(*this, *sp);

  sync::call_rcu(&sp->rcu_head, &TdpMmu::tdp_mmu_free_sp_rcu_callback);
}

void TdpMmu::tdp_mmu_free_sp(MmuPage* sp, bool after_grace_period) {
  // Once reachable, a table may still be under an RCU reader that picked it
  // up before it was unlinked: only call_rcu may free it.
  warn_on_once(sp->linked && !after_grace_period, kvm_, Site::free_sp_without_rcu);
  // The TDX module still holds the S-EPT page: a design freed the table
  // before reclaiming it (single-hook without the RCU read lock held). The
  // host must not touch the page, and the design may still dereference the
  // sp, so both stay allocated until the MMU goes away.
  if (sp->external_linked && sp->external_spt.valid()) [[unlikely]] {
    warn_on_once(true, kvm_, Site::free_sp_external_live);
    std::lock_guard g(pages_lock_);
    zombies_.push_back(sp);
    return;
  }
  // A leaked external_spt (failed reclaim) was set invalid on purpose: the
  // host must never touch a page the TDX module may still own.
  if (sp->external_spt.valid()) pool_.free(sp->external_spt, PageOwner::SeptPage);
  if (remote_tlb_) remote_tlb_->table_freed(sp->spt_pfn);
  if (observer_) observer_->on_table_freed(sp->spt_pfn);
  pool_.set_page_private(sp->spt_pfn, nullptr);
  pool_.free(sp->spt_pfn, PageOwner::PageTable);
  delete sp;
}

void TdpMmu::tdp_mmu_free_sp_rcu_callback(sync::RcuHead* head) {
  sync::rcu_callback_enter(head);
  MmuPage* sp = reinterpret_cast<MmuPage*>(head);
  static_cast<TdpMmu*>(sp->owner)->tdp_mmu_free_sp(sp, true);
}

}  // namespace mirrormmu
