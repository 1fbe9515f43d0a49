// SPDX-License-Identifier: MIT
// Zapping: leaf zaps over a range, whole-root zaps, and yielding.
#include "mmu/tdp_mmu.h"
#include "spte/spte.h"

namespace mirrormmu {

using namespace spte;

// tdp_mmu_iter_cond_resched(): drop mmu_lock and RCU when someone waits (or
// when the test knob says so), but only after forward progress, and only at
// an iteration boundary: never with a frozen SPTE held, never inside
// handle_removed_pt. The next iteration restarts from the root.
bool TdpMmu::tdp_mmu_iter_cond_resched(TdpIter& iter, bool flush, bool shared) {
  if (iter.next_last_level_gfn == iter.yielded_gfn) return false;
  bool want = mmu_lock_.contended();
  if (!want && resched_interval_ != 0 &&
      resched_count_.fetch_add(1, std::memory_order_relaxed) % resched_interval_ == resched_interval_ - 1)
    want = true;
  if (!want) want = sync::forced_yield();
  if (!want) return false;
  if (flush) kvm_flush_remote_tlbs();
  sync::rcu_read_unlock();
  if (shared) {
    mmu_lock_.read_unlock();
    sync::sched_point(sync::PointKind::Yield, &iter);
    mmu_lock_.read_lock();
  } else {
    mmu_lock_.write_unlock();
    sync::sched_point(sync::PointKind::Yield, &iter);
    mmu_lock_.write_lock();
  }
  sync::rcu_read_lock();
  stats_.yields.fetch_add(1, std::memory_order_relaxed);
  iter.yielded = true;
  return true;
}

bool TdpMmu::tdp_mmu_zap_leafs(MmuPage* root, Gfn start, Gfn end, bool can_yield, bool flush) {
  sync::assert_held_write(mmu_lock_, kvm_);
  if (end.v > cfg_.max_gfn_exclusive) end = Gfn{cfg_.max_gfn_exclusive};
  sync::RcuReadGuard rcu;
  TdpIter iter(pool_, root, PgLevel::k4K, start, kvm_gfn_root_bits(root));
  if (resched_interval_ == 0) iter.skip_empty_below = end;  // see TdpIter::skip_empty_run
  for (; iter.valid && iter.gfn < end; iter.next()) {
    if (can_yield && tdp_mmu_iter_cond_resched(iter, flush, false)) {
      flush = false;
      continue;
    }
    if (!is_shadow_present(iter.old_spte) || !is_last(iter.old_spte, iter.level)) continue;
    tdp_mmu_iter_set_spte(iter, kNonPresent);
    // An invalid root is unreachable by vCPUs: nothing to flush for it.
    if (!root->role.invalid) flush = true;
  }
  return flush;
}

bool TdpMmu::kvm_tdp_mmu_zap_leafs(Gfn start, Gfn end, bool flush) {
  sync::assert_held_write(mmu_lock_, kvm_);
  for (MmuPage* root : roots_snapshot(kValidRoots)) {
    flush = tdp_mmu_zap_leafs(root, start, end, true, flush);
    kvm_tdp_mmu_put_root(root);
  }
  return flush;
}

bool TdpMmu::kvm_tdp_mmu_unmap_gfn_range(const GfnRange& range, bool flush) {
  sync::assert_held_write(mmu_lock_, kvm_);
  // kvm_gfn_range_filter_to_root_types(): a non-TD only has direct roots.
  unsigned types = kInvalidRoots;
  if (!cfg_.has_mirrored_tdp) {
    types |= kDirectRoots;
  } else {
    if (unsigned(range.filter) & unsigned(GfnFilter::Private)) types |= kMirrorRoots;
    if (unsigned(range.filter) & unsigned(GfnFilter::Shared)) types |= kDirectRoots;
  }
  for (MmuPage* root : roots_snapshot(types)) {
    flush = tdp_mmu_zap_leafs(root, range.start, range.end, range.may_block, flush);
    kvm_tdp_mmu_put_root(root);
  }
  return flush;
}

void TdpMmu::kvm_tdp_mmu_zap_all() {
  sync::assert_held_write(mmu_lock_, kvm_);
  // External page tables cannot be zapped wholesale: only direct roots.
  for (MmuPage* root : roots_snapshot(kDirectRoots | kInvalidRoots)) {
    if (!root->is_mirror()) tdp_mmu_zap_root(root, false);
    kvm_tdp_mmu_put_root(root);
  }
}

void TdpMmu::tdp_mmu_zap_root_level(MmuPage* root, bool shared, PgLevel zap_level) {
  TdpIter iter(pool_, root, zap_level, Gfn{0}, 0);
  // A never-filled entry is passed over below; a forced resched interval
  // counts every entry, so then none may be (TdpIter::skip_empty_run).
  if (resched_interval_ == 0) iter.skip_empty_below = Gfn{cfg_.max_gfn_exclusive};
  for (; iter.valid && iter.gfn.v < cfg_.max_gfn_exclusive; iter.next()) {
  retry:
    if (tdp_mmu_iter_cond_resched(iter, false, shared)) continue;
    if (!is_shadow_present(iter.old_spte)) continue;
    if (iter.level > zap_level) continue;
    if (!shared) {
      // What-if: the table's removal (and, for option 2, the reclaim of its
      // S-EPT page after call_rcu) runs outside the RCU read section.
      const bool drop_rcu = cfg_.what_if.no_rcu_in_zap && !is_last(iter.old_spte, iter.level);
      if (drop_rcu) [[unlikely]] sync::rcu_read_unlock();
      tdp_mmu_iter_set_spte(iter, kNonPresent);
      if (drop_rcu) [[unlikely]] sync::rcu_read_lock();
    } else if (tdp_mmu_set_spte_atomic(iter, kNonPresent)) {
      goto retry;
    }
  }
}

// Zapping a non-leaf recurses through handle_removed_pt(), which cannot
// yield; zapping level by level keeps each unbreakable chunk to at most one
// 2M (then 1G) subtree.
void TdpMmu::tdp_mmu_zap_root(MmuPage* root, bool shared) {
  if (shared) sync::assert_held_read(mmu_lock_, kvm_); else sync::assert_held_write(mmu_lock_, kvm_);
  sync::RcuReadGuard rcu;
  tdp_mmu_zap_root_level(root, shared, PgLevel::k4K);
  tdp_mmu_zap_root_level(root, shared, PgLevel::k2M);
  tdp_mmu_zap_root_level(root, shared, PgLevel::k1G);
  tdp_mmu_zap_root_level(root, shared, root->role.level);
}

}  // namespace mirrormmu

namespace mirrormmu {

using namespace spte;

// Frozen first, so nobody installs a present entry here before the TLBs
// are flushed; only then the final value and the change handling (which,
// for a table, frees it: no vCPU may still be walking through it).
int TdpMmu::tdp_mmu_zap_spte_atomic(TdpIter& iter) {
  sync::assert_held_read(mmu_lock_, kvm_);
  if (!sync::cmpxchg_spte(iter.sptep, iter.old_spte, kFrozen)) return -EBUSY;
  if (!cfg_.zap_atomic_no_flush) [[likely]] kvm_flush_remote_tlbs_gfn(iter.gfn, iter.level);
  sync::write_spte(iter.sptep, kNonPresent);
  handle_changed_spte(iter.sp(), iter.gfn, iter.old_spte, kNonPresent, iter.level, true);
  return 0;
}

// zap_collapsible_spte_range() for every valid direct root.
void TdpMmu::zap_collapsible_sptes(Gfn start, Gfn end, int (*max_level)(void*, Gfn), void* ctx) {
  sync::assert_held_read(mmu_lock_, kvm_);
  for (MmuPage* root : roots_snapshot(kDirectRoots)) {
    sync::RcuReadGuard rcu;
    for (TdpIter iter(pool_, root, PgLevel::k2M, start, kvm_gfn_root_bits(root)); iter.valid && iter.gfn < end;
         iter.next()) {
      for (;;) {
        if (tdp_mmu_iter_cond_resched(iter, false, true)) break;
        if (iter.level > PgLevel::k1G || !is_shadow_present(iter.old_spte)) break;
        // A leaf is as huge as it will get here; a table may become one.
        if (is_last(iter.old_spte, iter.level)) break;
        // Partly outside: lpage_info cannot say, and it could not be huge.
        if (iter.gfn < start || iter.gfn >= end) break;
        if (max_level(ctx, iter.gfn) < lvl(iter.level)) break;
        if (tdp_mmu_zap_spte_atomic(iter) == 0) break;
        iter.old_spte = sync::read_spte(iter.sptep);  // raced: look again
      }
    }
    kvm_tdp_mmu_put_root(root);
  }
}

}  // namespace mirrormmu
