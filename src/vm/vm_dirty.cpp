// SPDX-License-Identifier: MIT
// Dirty logging on the direct root, by write-protection.
#include <cerrno>

#include "sync/rcu.h"
#include "vm/vm.h"

namespace mirrormmu {

int Vm::set_dirty_logging(int slot_id, bool on) {
  // A memslot update: the writer side of memslot SRCU.
  sync::WriteGuard slots(slots_lock_);
  Memslot* s = slot_by_id(slot_id);
  if (!s || unusable()) return -EINVAL;
  return set_dirty_logging_locked(*s, on);
}

int Vm::set_dirty_logging_locked(Memslot& s, bool on) {
  if (s.gmem) return -EINVAL;  // private memory cannot be dirty-logged
  if (!on) {
    s.flags &= ~kMemLogDirtyPages;
    for (size_t w = 0; w < s.dirty_bitmap.size(); w++) s.take_dirty_word(w);
    return 0;
  }
  s.flags |= kMemLogDirtyPages;
  sync::RcuThread rcu_thread;
  // kvm_mmu_slot_try_split_huge_pages() (eager_page_split): split the slot's
  // huge leaves now, under the shared lock, so the first write to each 4K
  // page does not have to. Failing to allocate is not an error: the
  // remaining huge pages are split by write faults instead.
  if (cfg_.eager_page_split) {
    sync::ReadGuard lock(mmu_->mmu_lock());
    mmu_->kvm_tdp_mmu_try_split_huge_pages(s.base_gfn, s.base_gfn + s.npages, PgLevel::k4K, true);
  }
  // kvm_mmu_slot_remove_write_access(): the TDP MMU does it under the shared
  // lock; huge pages left are write-protected too and split on the first
  // write fault (the fault now wants 4K).
  {
    sync::ReadGuard lock(mmu_->mmu_lock());
    (void)mmu_->kvm_tdp_mmu_wrprot_slot(s.base_gfn, s.base_gfn + s.npages, PgLevel::k4K);
  }
  // Unconditionally, as kvm_mmu_slot_apply_flags() does: a leaf that was
  // made read-only by someone else (an eager split racing a vCPU, a previous
  // harvest) without a flush yet may still be writable in some TLB, and a
  // write through it would never reach the dirty bitmap.
  mmu_->kvm_flush_remote_tlbs();
  return 0;
}

std::optional<std::vector<uint64_t>> Vm::get_dirty_log(int slot_id) {
  sync::RcuThread rcu_thread;
  sync::ReadGuard slots(slots_lock_);
  Memslot* s = slot_by_id(slot_id);
  if (!s || !(s->flags & kMemLogDirtyPages) || unusable()) return std::nullopt;
  std::vector<uint64_t> out(s->dirty_bitmap.size());
  {
    // kvm_arch_mmu_enable_log_dirty_pt_masked(): write-protect what is
    // reported, under the same lock as taking it, so a write racing with
    // the harvest is either in this bitmap or faults again into the next.
    sync::WriteGuard lock(mmu_->mmu_lock());
    for (size_t w = 0; w < out.size(); w++) {
      out[w] = s->take_dirty_word(w);
      if (out[w]) mmu_->kvm_tdp_mmu_clear_dirty_pt_masked(s->base_gfn + w * 64, out[w]);
    }
  }
  mmu_->kvm_flush_remote_tlbs();
  stats_.dirty_log_gets++;
  return out;
}

std::optional<std::vector<uint64_t>> Vm::get_dirty_log_manual(int slot_id) {
  sync::ReadGuard slots(slots_lock_);
  Memslot* s = slot_by_id(slot_id);
  if (!s || !(s->flags & kMemLogDirtyPages) || unusable()) return std::nullopt;
  std::vector<uint64_t> out(s->dirty_bitmap.size());
  for (size_t w = 0; w < out.size(); w++) out[w] = s->peek_dirty_word(w);
  stats_.dirty_log_gets++;
  return out;
}

int Vm::clear_dirty_log(int slot_id, const std::vector<uint64_t>& mask) {
  sync::RcuThread rcu_thread;
  sync::ReadGuard slots(slots_lock_);
  Memslot* s = slot_by_id(slot_id);
  if (!s || !(s->flags & kMemLogDirtyPages) || unusable() || mask.size() > s->dirty_bitmap.size()) return -EINVAL;
  bool flush = false;
  {
    // kvm_clear_dirty_log_protect(): a bit is cleared and its page
    // write-protected under mmu_lock, so a write after the clear faults and
    // sets the bit again.
    sync::WriteGuard lock(mmu_->mmu_lock());
    for (size_t w = 0; w < mask.size(); w++) {
      if (!mask[w]) continue;
      if (const uint64_t cleared = s->clear_dirty_bits(w, mask[w])) {
        if (cfg_.what_if.no_wrprot_on_clear) continue;
        mmu_->kvm_tdp_mmu_clear_dirty_pt_masked(s->base_gfn + w * 64, cleared);
        flush = true;
      }
    }
  }
  if (flush) mmu_->kvm_flush_remote_tlbs();
  return 0;
}

}  // namespace mirrormmu
