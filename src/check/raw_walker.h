// SPDX-License-Identifier: MIT
// A deliberately separate reader of the raw page tables: no TdpIter, no MMU
// helpers, just the SPTE encoding and the pool. The checker and the property
// test compare what it finds against the S-EPT and against a model, so a bug
// in the MMU's own walker cannot hide itself.
#pragma once

#include <cstdint>
#include <vector>

#include "base/types.h"
#include "mem/pfn_pool.h"

namespace mirrormmu {

struct MmuPage;

struct RawLeaf {
  Gfn gfn;       // base gfn (without root bits)
  PgLevel level;
  Pfn pfn;
  uint64_t spte;
};
struct RawTable {
  Gfn gfn;            // base gfn the table covers
  PgLevel level;      // level of the table's entries
  Pfn pfn;            // the table page (sp->spt)
  Pfn external_spt;   // sp->external_spt as recorded in the page header
  const MmuPage* sp;  // null if the pool has no header for the page
};
struct RawFrozen {
  Gfn gfn;
  PgLevel level;
};

struct RawTree {
  std::vector<RawLeaf> leaves;
  std::vector<RawTable> tables;  // non-root tables, parents first
  std::vector<RawFrozen> frozen;
  uint64_t mmio = 0;
  uint64_t bad_entries = 0;      // neither present, non-present, frozen nor MMIO
  uint64_t unwritten = 0;        // still holding an unfilled split table's pattern
};

// Walks the tree under `root_spt` (a table at `root_level`) into `out`,
// which is cleared first (its capacity is kept: checks run after every
// operation and should not churn memory). Only entries whose first gfn lies
// in [start, end) are reported, so walks of disjoint ranges report every
// entry once; tables are entered wherever they overlap the range.
void raw_walk(const PfnPool& pool, const uint64_t* root_spt, PgLevel root_level, uint64_t mmio_value,
              RawTree& out, Gfn start = Gfn{0}, Gfn end = Gfn{~0ull});

// The first gfn of every `region`-sized piece of the tree that holds
// anything: entries at `region` level that are not plain non-present, and
// anything but a table above it. A full check walks these one at a time,
// so its memory follows the largest region, not the whole guest.
void raw_regions(const PfnPool& pool, const uint64_t* root_spt, PgLevel root_level, PgLevel region,
                 std::vector<Gfn>& out);

}  // namespace mirrormmu
