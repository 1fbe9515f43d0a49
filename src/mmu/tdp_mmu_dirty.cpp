// SPDX-License-Identifier: MIT
// Write-protection for dirty logging.
#include <bit>

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
      // Only the Writable bit: MMU-writable stays, so that fast_page_fault
      // may make the page writable again without mmu_lock (marking it dirty
      // as it does). Clearing MMU-writable is for write-tracking, where no
      // lockless path may restore write access. (The oracle's differential
      // test found the model clearing both.)
      if (tdp_mmu_set_spte_atomic(iter, iter.old_spte & ~kWritable)) goto retry;
      spte_set = true;
    }
    kvm_tdp_mmu_put_root(root);
  }
  return spte_set;
}

// tdp_mmu_clear_spte_bits(): only ever removes permission or state bits
// from a leaf, so no change handling is needed. Still atomic when hardware
// or a lockless writer may set bits in the same word meanwhile: a plain
// store of a stale snapshot would drop them.
uint64_t TdpMmu::tdp_mmu_clear_spte_bits(uint64_t* sptep, uint64_t old_spte, uint64_t mask, Gfn gfn,
                                         PgLevel level) {
  if (has_volatile_bits(old_spte) && !cfg_.plain_store_over_volatile)
    return sync::fetch_and_spte(sptep, ~mask) & ~mask;
  if (observer_) [[unlikely]] {
    const uint64_t was = sync::write_spte_observed(sptep, old_spte & ~mask);
    if (lost_update(old_spte, was)) observer_->on_lost_update(gfn, level, old_spte, was, old_spte & ~mask);
  } else {
    sync::write_spte(sptep, old_spte & ~mask);
  }
  return old_spte & ~mask;
}

// Without PML (the model has none) KVM harvests by write-protection: wrprot
// is true and the bit cleared is PT_WRITABLE_MASK, never Dirty. The SPTE
// stays a present leaf at the same pfn, which is why the kernel skips
// handle_changed_spte here and only traces the change; the caller flushes.
void TdpMmu::kvm_tdp_mmu_clear_dirty_pt_masked(Gfn gfn_base, uint64_t mask) {
  sync::assert_held_write(mmu_lock_, kvm_);
  const uint64_t dbit = kWritable;
  for (MmuPage* root : roots_snapshot(kDirectRoots)) {
    sync::RcuReadGuard rcu;
    uint64_t left = mask;
    const Gfn end = gfn_base + 64;
    for (TdpIter iter(pool_, root, PgLevel::k4K, gfn_base + std::countr_zero(mask), kvm_gfn_root_bits(root));
         left && iter.valid && iter.gfn < end; iter.next()) {
      if (!is_shadow_present(iter.old_spte) || !is_last(iter.old_spte, iter.level)) continue;
      if (iter.level > PgLevel::k4K || !(left & (1ull << (iter.gfn - gfn_base)))) continue;
      left &= ~(1ull << (iter.gfn - gfn_base));
      if (!(iter.old_spte & dbit)) continue;
      const uint64_t new_spte = tdp_mmu_clear_spte_bits(iter.sptep, iter.old_spte, dbit, iter.gfn, iter.level);
      if (observer_) [[unlikely]]
        observer_->on_spte_changed({iter.gfn, iter.level, iter.old_spte, new_spte, false, false});
      iter.old_spte = new_spte;
    }
    kvm_tdp_mmu_put_root(root);
  }
}

// kvm_tdp_mmu_handle_gfn() with age_gfn_range() or test_age_gfn(): every
// root, invalid ones too (a vCPU may still run on one), leaves only.
bool TdpMmu::kvm_tdp_mmu_handle_gfn(Gfn start, Gfn end, bool test_only) {
  sync::assert_held_write(mmu_lock_, kvm_);
  bool young = false;
  for (MmuPage* root : roots_snapshot(kDirectRoots | kInvalidRoots)) {
    sync::RcuReadGuard rcu;
    for (TdpIter iter(pool_, root, PgLevel::k4K, start, kvm_gfn_root_bits(root)); iter.valid && iter.gfn < end;
         iter.next()) {
      if (!is_shadow_present(iter.old_spte) || !is_last(iter.old_spte, iter.level)) continue;
      if (!(iter.old_spte & kAccessed)) continue;
      young = true;
      if (test_only) continue;
      // Atomic when the CPU may set Dirty meanwhile (a writable leaf
      // without it): a plain store would take it back.
      const uint64_t new_spte = tdp_mmu_clear_spte_bits(iter.sptep, iter.old_spte, kAccessed, iter.gfn, iter.level);
      if (observer_) [[unlikely]]
        observer_->on_spte_changed({iter.gfn, iter.level, iter.old_spte, new_spte, false, false});
      iter.old_spte = new_spte;
    }
    kvm_tdp_mmu_put_root(root);
  }
  return young;
}

// __kvm_tdp_mmu_age_gfn_range() without mmu_lock: only RCU keeps the roots
// and tables readable, and any writer (a zap, a fault, the CPU) may change
// an entry between the read and the clear. So the clear is one atomic and
// of the live value; invalid roots are left alone (nothing needs them aged,
// and they may be mid-teardown).
bool TdpMmu::kvm_tdp_mmu_age_gfn_range_lockless(Gfn start, Gfn end, bool test_only) {
  sync::RcuReadGuard rcu;
  std::vector<MmuPage*> roots;
  {
    // for_each_valid_tdp_mmu_root_rcu(): no references; a root is freed
    // only after a grace period this read side holds off.
    std::lock_guard g(pages_lock_);
    for (MmuPage* r : roots_)
      if (tdp_mmu_root_match(r, kDirectRoots) && !r->role.invalid) roots.push_back(r);
  }
  bool young = false;
  for (MmuPage* root : roots) {
    for (TdpIter iter(pool_, root, PgLevel::k4K, start, kvm_gfn_root_bits(root)); iter.valid && iter.gfn < end;
         iter.next()) {
      if (!is_shadow_present(iter.old_spte) || !is_last(iter.old_spte, iter.level)) continue;
      if (!(iter.old_spte & kAccessed)) continue;
      if (test_only) return true;
      young = true;
      uint64_t old_spte;
      if (cfg_.age_plain_store) [[unlikely]] {
        old_spte = iter.old_spte;
        sync::write_spte(iter.sptep, old_spte & ~kAccessed);
      } else {
        old_spte = sync::fetch_and_spte(iter.sptep, ~kAccessed);
      }
      if (observer_) [[unlikely]]
        observer_->on_spte_changed({iter.gfn, iter.level, old_spte, old_spte & ~kAccessed, true, false});
    }
  }
  return young;
}

bool TdpMmu::kvm_tdp_mmu_age_gfn_range(Gfn start, Gfn end) {
  if (cfg_.lockless_aging) return kvm_tdp_mmu_age_gfn_range_lockless(start, end, false);
  return kvm_tdp_mmu_handle_gfn(start, end, false);
}

bool TdpMmu::kvm_tdp_mmu_test_age_gfn(Gfn start, Gfn end) {
  if (cfg_.lockless_aging) return kvm_tdp_mmu_age_gfn_range_lockless(start, end, true);
  return kvm_tdp_mmu_handle_gfn(start, end, true);
}

}  // namespace mirrormmu
