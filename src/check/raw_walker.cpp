// SPDX-License-Identifier: MIT
#include "check/raw_walker.h"

#include "mmu/mmu_page.h"
#include "mmu/tdp_mmu.h"
#include "spte/spte.h"

namespace mirrormmu {

namespace {

void walk(const PfnPool& pool, const uint64_t* table, PgLevel level, Gfn base, uint64_t mmio_value,
          RawTree& out) {
  const uint64_t span = pages_per_hpage(level);
  for (int i = 0; i < kSptePerPage; i++) {
    const uint64_t s = std::atomic_ref<const uint64_t>(table[i]).load(std::memory_order_acquire);
    const Gfn gfn = base + uint64_t(i) * span;
    if (spte::is_frozen(s)) {
      out.frozen.push_back({gfn, level});
    } else if (spte::is_shadow_present(s)) {
      const Pfn pfn = spte::to_pfn(s);
      if (spte::is_last(s, level)) {
        out.leaves.push_back({gfn, level, pfn, s});
      } else {
        const uint64_t* child = pool.page_ptr(pfn);
        const auto* sp = static_cast<const MmuPage*>(pool.page_private(pfn));
        out.tables.push_back({gfn, lower(level), pfn, sp ? sp->external_spt : kInvalidPfn, sp});
        if (child) walk(pool, child, lower(level), gfn, mmio_value, out);
        else out.bad_entries++;
      }
    } else if (s == spte::kNonPresent) {
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

}  // namespace

void raw_walk(const PfnPool& pool, const uint64_t* root_spt, PgLevel root_level, uint64_t mmio_value,
              RawTree& out) {
  out.leaves.clear();
  out.tables.clear();
  out.frozen.clear();
  out.mmio = out.bad_entries = out.unwritten = 0;
  walk(pool, root_spt, root_level, Gfn{0}, mmio_value, out);
}

}  // namespace mirrormmu
