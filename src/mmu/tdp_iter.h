// SPDX-License-Identifier: MIT
// The TDP iterator: a pre-order walk of one root over a gfn range, able to
// restart from the root after yielding (the tables it held may be gone).
#pragma once

#include <cstdint>

#include "base/types.h"
#include "mem/pfn_pool.h"
#include "mmu/mmu_page.h"
#include "spte/spte.h"
#include "sync/spte_atomic.h"

namespace mirrormmu {

struct TdpIter {
  Gfn next_last_level_gfn{};  // where the walk is heading
  Gfn yielded_gfn{};          // next_last_level_gfn at the last yield
  uint64_t* pt_path[kRootMaxLevel] = {};
  MmuPage* sp_path[kRootMaxLevel] = {};  // the kvm_mmu_page of each table in pt_path
  uint64_t* sptep = nullptr;
  Gfn gfn{};                  // base gfn of the current entry, without root bits
  uint64_t gfn_bits = 0;      // the root's bits (the TDX shared bit for a direct root)
  PgLevel root_level = PgLevel::k4K;
  PgLevel min_level = PgLevel::k4K;
  PgLevel level = PgLevel::k4K;
  uint64_t old_spte = 0;      // snapshot of *sptep
  bool valid = false;
  bool yielded = false;
  MmuPage* root = nullptr;
  const PfnPool* pool = nullptr;
  // Set by a walk whose body does nothing but go on for an entry that was
  // never filled (zap loops): under the deterministic engine, runs of such
  // entries below this gfn may be passed in one go (DetEngine::fast_forward).
  Gfn skip_empty_below{};

  TdpIter(const PfnPool& p, MmuPage* r, PgLevel min, Gfn start, uint64_t bits) { begin(p, r, min, start, bits); }

  void begin(const PfnPool& p, MmuPage* r, PgLevel min, Gfn start, uint64_t bits);
  void next();
  void restart();
  bool is_mirror() const { return root->is_mirror(); }
  // sptep_to_sp(iter.sptep): the table holding the current entry.
  MmuPage* sp() const { return sp_path[lvl(level) - 1]; }

 private:
  void refresh_sptep();
  bool try_step_down();
  bool try_step_side();
  bool try_step_up();
  void skip_empty_run(unsigned idx);
};

inline void TdpIter::begin(const PfnPool& p, MmuPage* r, PgLevel min, Gfn start, uint64_t bits) {
  pool = &p;
  root = r;
  valid = false;
  // A start gfn that already carries the root's bits is a caller bug: every
  // gfn in the MMU is un-aliased; the bits are ORed in only for indexing.
  if (!r || lvl(r->role.level) < 1 || lvl(r->role.level) > kRootMaxLevel || (bits && (start.v & bits))) return;
  next_last_level_gfn = start;
  gfn_bits = bits;
  root_level = r->role.level;
  min_level = min;
  pt_path[lvl(root_level) - 1] = r->spt;
  sp_path[lvl(root_level) - 1] = r;
  restart();
}

inline void TdpIter::restart() {
  yielded = false;
  yielded_gfn = next_last_level_gfn;
  level = root_level;
  gfn = gfn_round_for_level(next_last_level_gfn, level);
  refresh_sptep();
  valid = true;
}

// The steps are inline: a fault takes three of them, and a call each, with
// the iterator spilled to memory and reloaded, was 54 of the 1,280
// instructions of a direct 4K fault; begin() and restart() were 47 more.
// The engine's skipping stays out of line.
inline void TdpIter::refresh_sptep() {
  sptep = pt_path[lvl(level) - 1] + spte_index(gfn.v | gfn_bits, level);
  old_spte = sync::read_spte(sptep);
}

inline bool TdpIter::try_step_down() {
  if (level == min_level) return false;
  // Re-read: the entry may have been zapped since the snapshot, and a table
  // that was just unlinked must never be entered.
  old_spte = sync::read_spte(sptep);
  if (!spte::is_nonleaf(old_spte, level)) return false;
  void* child_sp;
  uint64_t* child = pool->page_ptr_private(spte::to_pfn(old_spte), &child_sp);
  if (!child) return false;
  level = lower(level);
  pt_path[lvl(level) - 1] = child;
  sp_path[lvl(level) - 1] = static_cast<MmuPage*>(child_sp);
  gfn = gfn_round_for_level(next_last_level_gfn, level);
  refresh_sptep();
  return true;
}

inline bool TdpIter::try_step_side() {
  const unsigned idx = spte_index(gfn.v | gfn_bits, level);
  if (idx == kSptePerPage - 1) return false;
  // Only an engine skips (one is steering whenever one runs).
  if (skip_empty_below.v != 0 && sync::sched_steered()) [[unlikely]] skip_empty_run(idx);
  gfn += pages_per_hpage(level);
  next_last_level_gfn = gfn;
  sptep++;
  old_spte = sync::read_spte(sptep);
  return true;
}

inline bool TdpIter::try_step_up() {
  if (level == root_level) return false;
  level = higher(level);
  gfn = gfn_round_for_level(gfn, level);
  refresh_sptep();
  return true;
}

inline void TdpIter::next() {
  if (yielded) {
    restart();
    return;
  }
  if (try_step_down()) return;
  do {
    if (try_step_side()) return;
  } while (try_step_up());
  valid = false;
}

// spte_to_child_pt(): the child table of a non-leaf, or null.
inline uint64_t* spte_to_child_pt(const PfnPool& pool, uint64_t s, PgLevel level) {
  if (!spte::is_nonleaf(s, level)) return nullptr;
  return pool.page_ptr(spte::to_pfn(s));
}
// spte_to_child_sp(): the kvm_mmu_page owning a non-leaf's child table.
inline MmuPage* spte_to_child_sp(const PfnPool& pool, uint64_t s) {
  return static_cast<MmuPage*>(pool.page_private(spte::to_pfn(s)));
}

}  // namespace mirrormmu
