// SPDX-License-Identifier: MIT
#include "check/end_state.h"

#include <algorithm>
#include <vector>

#include "check/raw_walker.h"
#include "spte/spte.h"
#include "tdx/module.h"
#include "vm/direct_mmu.h"
#include "vm/vm.h"

namespace mirrormmu {

namespace {

struct Digest {
  uint64_t h = 0x6a09e667f3bcc908ull;
  void add(uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
  }
};

// An SPTE without the frame it points at.
uint64_t attributes(uint64_t spte) { return spte & ~spte::kBaseAddrMask; }

}  // namespace

uint64_t end_state_digest(Vm& vm) {
  const uint64_t mmio = vm.mmu().config().mmio_value;
  // Roots are listed in the order they were made, which can differ; each
  // root's digest goes into a sorted list.
  std::vector<uint64_t> roots;
  RawTree t;
  vm.mmu().for_each_root([&](MmuPage* root) {
    Digest d;
    d.add(root->role.is_mirror);
    d.add(root->role.invalid);
    d.add(static_cast<uint64_t>(root->role.level));
    raw_walk(vm.pool(), root->spt, root->role.level, mmio, t);
    for (const auto& tb : t.tables) {
      d.add(tb.gfn.v);
      d.add(static_cast<uint64_t>(tb.level));
    }
    for (const auto& lf : t.leaves) {
      d.add(lf.gfn.v);
      d.add(static_cast<uint64_t>(lf.level));
      d.add(attributes(lf.spte));
    }
    d.add(t.frozen.size());
    d.add(t.mmio);
    d.add(t.bad_entries);
    roots.push_back(d.h);
  });
  std::sort(roots.begin(), roots.end());
  Digest all;
  for (uint64_t r : roots) all.add(r);
  if (const tdx::TdxModule* m = vm.module())
    m->for_each_entry([&](const tdx::TdxModule::EntryView& e) {
      all.add(e.gpa);
      all.add(static_cast<uint64_t>(e.tdx_level));
      all.add(static_cast<uint64_t>(e.state));
    });
  return all.h;
}

uint64_t end_state_digest(DirectMmu& mmu) {
  std::vector<DirectLeaf> leaves = mmu.leaves();
  std::sort(leaves.begin(), leaves.end(), [](const DirectLeaf& a, const DirectLeaf& b) {
    return a.gfn != b.gfn ? a.gfn < b.gfn : a.level > b.level;
  });
  Digest d;
  for (const auto& lf : leaves) {
    d.add(lf.gfn);
    d.add(static_cast<uint64_t>(lf.level));
    d.add(attributes(lf.spte));
  }
  for (int level = 1; level <= 3; level++) d.add(static_cast<uint64_t>(mmu.pages(level)));
  return d.h;
}

}  // namespace mirrormmu
