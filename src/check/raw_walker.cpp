// SPDX-License-Identifier: MIT
#include "check/raw_walker.h"

#include "mmu/mmu_page.h"
#include "mmu/tdp_mmu.h"
#include "spte/spte.h"

namespace mirrormmu {

namespace {

struct Walk {
  const PfnPool& pool;
  uint64_t mmio_value;
  uint64_t start, end;  // report entries whose base gfn lies in [start, end)
  RawTree& out;

  void table(const uint64_t* t, PgLevel level, Gfn base) {
    const uint64_t span = pages_per_hpage(level);
    // Only the entries overlapping [start, end): a check of one 2M region
    // must not cost a walk of the gigabyte around it.
    const uint64_t first = start > base.v ? (start - base.v) / span : 0;
    for (uint64_t i = first; i < kSptePerPage; i++) {
      const Gfn gfn = base + i * span;
      if (gfn.v >= end) break;
      const bool mine = gfn.v >= start;
      const uint64_t s = std::atomic_ref<const uint64_t>(t[i]).load(std::memory_order_acquire);
      if (spte::is_frozen(s)) {
        if (mine) out.frozen.push_back({gfn, level});
      } else if (spte::is_shadow_present(s)) {
        const Pfn pfn = spte::to_pfn(s);
        if (spte::is_last(s, level)) {
          if (mine) out.leaves.push_back({gfn, level, pfn, s});
        } else {
          const uint64_t* child = pool.page_ptr(pfn);
          const auto* sp = static_cast<const MmuPage*>(pool.page_private(pfn));
          if (mine) out.tables.push_back({gfn, lower(level), pfn, sp ? sp->external_spt : kInvalidPfn, sp});
          if (child) table(child, lower(level), gfn);
          else if (mine) out.bad_entries++;
        }
      } else if (!mine || s == spte::kNonPresent) {
        continue;
      } else if (s == kUnfilledSpte) {
        out.unwritten++;
      } else if (spte::is_mmio(s, mmio_value)) {
        out.mmio++;
      } else {
        out.bad_entries++;
      }
    }
  }
};

void find_regions(const PfnPool& pool, const uint64_t* t, PgLevel level, Gfn base, PgLevel region,
                  std::vector<Gfn>& out) {
  const uint64_t span = pages_per_hpage(level);
  for (uint64_t i = 0; i < kSptePerPage; i++) {
    const uint64_t s = std::atomic_ref<const uint64_t>(t[i]).load(std::memory_order_acquire);
    if (s == spte::kNonPresent) continue;
    const Gfn gfn = base + i * span;
    const uint64_t* child = level > region && spte::is_shadow_present(s) && !spte::is_last(s, level)
                                ? pool.page_ptr(spte::to_pfn(s))
                                : nullptr;
    // A table is an entry too, counted where it starts, even if nothing is
    // under it at the region's level.
    out.push_back(gfn);
    if (child) find_regions(pool, child, lower(level), gfn, region, out);
  }
}

}  // namespace

void raw_walk(const PfnPool& pool, const uint64_t* root_spt, PgLevel root_level, uint64_t mmio_value,
              RawTree& out, Gfn start, Gfn end) {
  out.leaves.clear();
  out.tables.clear();
  out.frozen.clear();
  out.mmio = out.bad_entries = out.unwritten = 0;
  Walk{pool, mmio_value, start.v, end.v, out}.table(root_spt, root_level, Gfn{0});
}

void raw_regions(const PfnPool& pool, const uint64_t* root_spt, PgLevel root_level, PgLevel region,
                 std::vector<Gfn>& out) {
  find_regions(pool, root_spt, root_level, Gfn{0}, region, out);
}

}  // namespace mirrormmu
