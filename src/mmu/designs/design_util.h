// SPDX-License-Identifier: MIT
// Pieces several hook designs share: reporting a hook call to the observer,
// the freeze protocol around an external update under the shared lock, and
// the [B] leaf removal and table reclaim.
#pragma once

#include <cstdint>

#include "mmu/tdp_mmu.h"
#include "spte/spte.h"

namespace mirrormmu::design_util {

inline void note(TdpMmu& mmu, HookKind k, Gfn gfn, PgLevel level, int r) {
  if (MmuObserver* o = mmu.observer()) o->on_external_hook(k, gfn, level, r);
}

// Freeze the entry, let `propagate` update the external tree, then finish
// the entry: back to exactly the old value on failure, the new one on
// success. Until the external update is done concurrent faults must neither
// see the new entry nor descend under it, and a child S-EPT page must never
// be linked before its parent entry exists. Only the freezer writes a frozen
// entry, so plain stores finish the update.
template <class Fn>
int freeze_and_propagate(TdpIter& iter, uint64_t new_spte, Fn&& propagate) {
  if (!sync::cmpxchg_spte(iter.sptep, iter.old_spte, spte::kFrozen)) return -EBUSY;
  const int ret = propagate();
  sync::write_spte(iter.sptep, ret ? iter.old_spte : new_spte);
  return ret;
}

// The tail of every layout's atomic mirror update: the change handling, once
// the external tree has the change.
inline int finish_atomic(TdpMmu& mmu, const TdpIter& iter, uint64_t old_spte, uint64_t new_spte, int r) {
  if (r == 0) mmu.handle_changed_spte(iter.sp(), iter.gfn, old_spte, new_spte, iter.level, true);
  return r;
}

// The child sp a new non-leaf mirror SPTE links, checked the way
// set_external_spte_present() checks it; null (VM bugged) when unusable.
inline MmuPage* child_for_link(TdpMmu& mmu, TdpIter& iter, uint64_t new_spte) {
  MmuPage* child = spte_to_child_sp(mmu.pool(), new_spte);
  warn_on_once(child->role.level != lower(iter.level) || child->gfn != iter.gfn, mmu.kvm(),
               Site::link_child_mismatch);
  if (kvm_bug_on(!child->external_spt.valid(), mmu.kvm(), Site::external_spt_null)) return nullptr;
  return child;
}

// [B] remove_external_spte(): leaves only; a non-leaf's external side is
// handled by handle_removed_pt.
inline void remove_leaf(TdpMmu& mmu, Gfn gfn, uint64_t old_spte, PgLevel level) {
  if (!spte::is_leaf(old_spte, level)) return;
  sync::assert_held_write(mmu.mmu_lock(), mmu.kvm());
  mmu.external()->remove_external_spte(gfn, level, old_spte);
  note(mmu, HookKind::RemoveExternalSpte, gfn, level, 0);
}

// A removed table whose S-EPT page the module never took: a split whose
// BLOCK, TRACK or DEMOTE failed (the VM is bugged) linked the mirror table
// but never donated the page. RECLAIM of it would fail and leak it; it is
// plain host memory, freed with the sp.
inline bool never_donated(const MmuPage& sp) { return !sp.external_linked; }

// [B] free_external_spt() once every child of a removed table is gone.
inline void free_table(TdpMmu& mmu, MmuPage& sp) {
  if (never_donated(sp)) return;
  const int r = mmu.external()->free_external_spt(sp.gfn, sp.role.level, sp.external_spt);
  note(mmu, HookKind::FreeExternalSpt, sp.gfn, sp.role.level, r);
  // Leak the page on failure: it may still be encrypted with the TD's key
  // or owned by the TDX module, and the host must never touch it.
  if (warn_on_once(r != 0, mmu.kvm(), Site::free_external_spt_failed)) sp.external_spt = kInvalidPfn;
  sp.external_linked = false;
}

// [P1]+ rule for which mirror changes go to the set hook from
// handle_changed_spte: all of them except a table being removed, whose
// children handle_removed_pt has already forwarded one by one.
inline bool forwards_change(uint64_t old_spte, uint64_t new_spte, PgLevel level) {
  const bool was_present = spte::is_shadow_present(old_spte);
  const bool was_table = was_present && !spte::is_last(old_spte, level);
  const bool is_present = spte::is_shadow_present(new_spte);
  if (!was_present && !is_present) return false;
  return !(was_table && (!is_present || spte::is_last(new_spte, level)));
}

}  // namespace mirrormmu::design_util
