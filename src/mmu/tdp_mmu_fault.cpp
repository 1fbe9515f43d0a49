// SPDX-License-Identifier: MIT
// Fault-in: kvm_tdp_mmu_map() and the helpers it uses to link and split.
#include <cerrno>

#include "mmu/tdp_mmu.h"
#include "spte/spte.h"

namespace mirrormmu {

using namespace spte;

void TdpMmu::tdp_mmu_init_child_sp(MmuPage* child, const TdpIter& iter) {
  // A child inherits its parent's role one level down; every sp in a mirror
  // tree is a mirror sp.
  child->role = MmuRole{lower(iter.level), iter.root->is_mirror(), false};
  child->gfn = iter.gfn;
  child->ptep = iter.sptep;
  child->parent = iter.sp();
}

int TdpMmu::tdp_mmu_link_sp(TdpIter& iter, MmuPage* sp, bool shared) {
  const uint64_t spte = make_nonleaf(sp->spt_pfn);
  if (shared) {
    if (int r = tdp_mmu_set_spte_atomic(iter, spte)) return r;
  } else {
    tdp_mmu_iter_set_spte(iter, spte);
  }
  // tdp_account_mmu_page(): roots are not counted.
  stats_.tdp_mmu_pages.fetch_add(1, std::memory_order_relaxed);
  sp->linked = true;
  return 0;
}

RetPf TdpMmu::tdp_mmu_map_handle_target_level(KvmPageFault& f, TdpIter& iter) {
  if (warn_on_once(iter.level != f.goal_level, kvm_, Site::map_sp_level)) return RetPf::Retry;
  // The pfn of a huge mapping is its base (f.pfn is the faulting 4K frame:
  // goal_level may have been lowered during the walk).
  const Pfn pfn{f.pfn.v & ~(pages_per_hpage(iter.level) - 1)};
  // Another vCPU got here first and the access is already allowed, or this
  // is a prefetch and something is mapped: nothing to do. The pfn cannot
  // differ, because an invalidation of the old pfn would have zapped the
  // leaf and made this fault retry on the sequence count.
  if (cfg_.spurious_if_access_allowed && is_shadow_present(iter.old_spte) && is_last(iter.old_spte, iter.level) &&
      (f.prefetch || ((!f.write || is_writable(iter.old_spte)) && (!f.exec || (iter.old_spte & kExecutable))))) {
    warn_on_once(f.has_slot && to_pfn(iter.old_spte) != pfn, kvm_, Site::map_spurious_pfn);
    return RetPf::Spurious;
  }

  uint64_t new_spte;
  if (!f.has_slot) {
    new_spte = make_mmio(f.gfn, cfg_.mmio_value, 0);
  } else {
    // make_spte(): a writable leaf is made Dirty at once (dirty logging
    // works by write-protection here, not by the Dirty bit), except over an
    // SPTE that was already writable, where make_spte jumps past it.
    const bool was_writable = is_last(iter.old_spte, iter.level) && is_writable(iter.old_spte);
    new_spte = make_leaf(pfn, iter.level,
                         {.writable = f.map_writable, .dirty = f.map_writable && !was_writable,
                          .host_writable = f.map_writable});
    // A prefetched page was not accessed yet: Accessed stays clear, for
    // aging to see (mirror leaves keep it; the S-EPT has no A/D to age).
    if (f.prefetch && !iter.is_mirror()) new_spte &= ~kAccessed;
    // make_spte(): with the NX huge page workaround no huge leaf may be
    // executed; a fetch through one faults and maps 4K instead.
    if (cfg_.nx_huge_pages && iter.level > PgLevel::k4K && !iter.is_mirror()) new_spte &= ~kExecutable;
  }
  // An unchanged MMIO SPTE still means "emulate": the access must go to the
  // device model, not back into the guest to fault again.
  if (new_spte == iter.old_spte) return f.has_slot ? RetPf::Spurious : RetPf::Emulate;
  if (tdp_mmu_set_spte_atomic(iter, new_spte)) return RetPf::Retry;
  if (observer_ && f.has_slot) [[unlikely]]
    observer_->on_set_spte(iter.gfn, iter.level, iter.sptep, new_spte);
  // A huge leaf replacing a table leaves the old translations of the small
  // pages; a leaf over a leaf can only ever add access here, and one that
  // takes MMU-writable away would need a flush the caller never does.
  if (is_shadow_present(iter.old_spte) &&
      (!is_last(iter.old_spte, iter.level) ||
       warn_on_once(is_mmu_writable(iter.old_spte) && !is_mmu_writable(new_spte), kvm_, Site::map_leaf_needs_flush)))
    kvm_flush_remote_tlbs_gfn(iter.gfn, iter.level);
  if (!f.has_slot) return RetPf::Emulate;
  if (f.write && !f.map_writable) return RetPf::WriteProtected;
  return RetPf::Fixed;
}

uint64_t* TdpMmu::kvm_tdp_mmu_fast_pf_get_last_sptep(MmuPage* root, Gfn gfn, uint64_t* spte, PgLevel* level) {
  uint64_t* sptep = nullptr;
  for (TdpIter iter(pool_, root, PgLevel::k4K, gfn, kvm_gfn_root_bits(root)); iter.valid && iter.gfn < gfn + 1;
       iter.next()) {
    *spte = iter.old_spte;
    *level = iter.level;
    sptep = iter.sptep;
  }
  return sptep;
}

RetPf TdpMmu::kvm_tdp_mmu_map(VcpuMmuCaches& c, MmuPage* direct_root, MmuPage* mirror_root,
                              KvmPageFault& f) {
  sync::assert_held_read(mmu_lock_, kvm_);
  // tdp_mmu_get_root_for_fault(): a GPA without the shared bit is private.
  MmuPage* root = (cfg_.has_mirrored_tdp && f.is_private) ? mirror_root : direct_root;
  RetPf ret = RetPf::Retry;
  if (observer_) [[unlikely]]
    observer_->on_spte_requested(f.gfn, f.pfn, f.goal_level);
  sync::RcuReadGuard rcu;
  // Read once: every SPTE read is an acquire, after which the compiler
  // would load each of them again at every level.
  const bool mirror = root->is_mirror();
  const bool no_promotion = mirror && !cfg_.what_if.mirror_promotion;
  const bool nx = cfg_.nx_huge_pages && !mirror;
  const Gfn end = f.gfn + 1;
  TdpIter iter(pool_, root, PgLevel::k4K, f.gfn, kvm_gfn_root_bits(root));
  for (; iter.valid && iter.gfn < end; iter.next()) {
    // Someone is mid-update here; don't allocate a table needlessly.
    if (is_frozen(iter.old_spte)) return RetPf::Retry;
    // disallowed_hugepage_adjust() as [P1] applies it to mirror roots: a
    // table already under the goal level stays; mapping a huge leaf over it
    // would be a promotion, which the S-EPT cannot do safely.
    if (no_promotion && iter.level == f.goal_level && f.goal_level > PgLevel::k4K &&
        is_shadow_present(iter.old_spte) && !is_last(iter.old_spte, iter.level))
      f.goal_level = lower(f.goal_level);
    if (nx) disallowed_hugepage_adjust(f, iter.old_spte, iter.level);
    if (iter.level == f.goal_level) return tdp_mmu_map_handle_target_level(f, iter);
    if (is_shadow_present(iter.old_spte) && !is_large(iter.old_spte)) continue;

    // A private huge leaf already covers the gfn: the fault asked for less
    // (the guest accepts at 4K). Splitting needs the exclusive lock, so the
    // size mismatch is resolved where the accept is handled; the access
    // itself is already mapped.
    if (mirror && is_shadow_present(iter.old_spte) && design_->supports_mirror_huge())
      return RetPf::Spurious;
    // Non-present, or a huge leaf that must be split to map at goal_level.
    MmuPage* sp = tdp_mmu_alloc_sp(c);
    if (!sp) return RetPf::Retry;
    tdp_mmu_init_child_sp(sp, iter);
    sp->nx_huge_page_disallowed.store(f.huge_page_disallowed, std::memory_order_relaxed);
    if (mirror) sp->external_spt = alloc_external_spt(&c);
    int r;
    if (is_shadow_present(iter.old_spte)) {
      // Mirror huge pages cannot be split from the fault path (shared lock).
      r = kvm_bug_on(mirror, kvm_, Site::map_mirror_split)
              ? -EIO
              : tdp_mmu_split_huge_page(iter, sp, true);
    } else {
      r = tdp_mmu_link_sp(iter, sp, true);
    }
    // Never linked: nobody else can have seen it, so free it at once.
    if (r) {
      tdp_mmu_free_sp(sp, false);
      return RetPf::Retry;
    }
    // The mapping could have been huge at this level but for NX: the
    // recovery worker may zap the table to let it become huge again.
    if (f.huge_page_disallowed && f.req_level >= iter.level) {
      std::lock_guard g(pages_lock_);
      if (sp->nx_huge_page_disallowed.load(std::memory_order_relaxed)) track_possible_nx_huge_page(sp);
    }
  }
  // The walk ended without reaching the goal: it was aborted by a race.
  warn_on_once(iter.valid && iter.level == f.goal_level, kvm_, Site::map_no_goal);
  return ret;
}

}  // namespace mirrormmu
