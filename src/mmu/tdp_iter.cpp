// SPDX-License-Identifier: MIT
#include "mmu/tdp_iter.h"

#include "sync/det_engine.h"

namespace mirrormmu {

// A teardown walks every entry of every table, nearly all of them never
// filled: under the engine, with nothing else left to run, that was 17,000
// scheduling points of 17,500 in an execution of the two-vCPU fault race.
// The entries passed are exactly those the point-by-point walk would have
// read and gone on from; the entry after them is read as usual.
void TdpIter::skip_empty_run(unsigned idx) {
  sync::DetEngine* e = sync::DetEngine::active();
  if (e == nullptr) return;
  const uint64_t limit = e->fast_forward_limit(sptep);
  if (limit == 0) return;
  const uint64_t step = pages_per_hpage(level);
  unsigned n = 0;
  Gfn g = gfn;
  for (unsigned j = idx + 1; j < kSptePerPage - 1; j++) {
    g += step;
    if (g >= skip_empty_below || sync::spte_ref(sptep + (j - idx)).load(std::memory_order_relaxed) != spte::kNonPresent)
      break;
    n++;
  }
  // Each of them is read once stepping onto it and, above the walk's lowest
  // level, again by try_step_down() looking for a child table.
  const uint64_t points = uint64_t(n) * (level == min_level ? 1 : 2);
  if (n == 0 || points > limit) return;
  e->fast_forward_take(points);
  gfn += n * step;
  sptep += n;
}

}  // namespace mirrormmu
