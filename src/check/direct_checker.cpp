// SPDX-License-Identifier: MIT
#include "check/direct_checker.h"

#include <fmt/format.h>

#include "spte/spte.h"

namespace mirrormmu {

namespace {

const DirectLayout::Slot* slot_of(const DirectLayout& l, uint64_t gfn, int* id) {
  for (const auto& [i, s] : l.slots)
    if (gfn >= s.base && gfn < s.base + s.npages) {
      if (id) *id = i;
      return &s;
    }
  return nullptr;
}

bool bit(const std::vector<uint64_t>& bits, uint64_t i) { return i / 64 < bits.size() && (bits[i / 64] >> (i % 64)) & 1; }

}  // namespace

std::string check_direct(DirectMmu& mmu, const DirectLayout& layout) {
  const std::vector<DirectLeaf> leaves = mmu.leaves();
  int64_t counted[kMaxHugeLevel] = {};
  std::map<int, std::vector<uint64_t>> dirty;
  for (const DirectLeaf& l : leaves) {
    const uint64_t n = pages_per_hpage(to_level(l.level));
    if (l.level < 1 || l.level > kMaxHugeLevel)
      return fmt::format("leaf_level: gfn {:#x} is mapped by a level-{} leaf", l.gfn, l.level);
    counted[l.level - 1]++;
    int id = -1;
    const DirectLayout::Slot* s = slot_of(layout, l.gfn, &id);
    if (!s) return fmt::format("leaf_outside_memslot: gfn {:#x} (L{}) is mapped but no memslot holds it", l.gfn, l.level);
    if (l.gfn < s->base || l.gfn + n > s->base + s->npages)
      return fmt::format("huge_leaf_past_memslot: the L{} leaf at gfn {:#x} reaches outside slot {}", l.level, l.gfn, id);
    // What the host's mapping backs the gfn with now: a leaf that maps
    // anything else maps a page the host may have freed.
    const uint64_t want = mmu.host().pfn(l.gfn);
    if (spte::to_pfn(l.spte).v != want)
      return fmt::format("leaf_pfn: gfn {:#x} (L{}) maps pfn {:#x}, the host backs it with {:#x}", l.gfn, l.level,
                         spte::to_pfn(l.spte).v, want);
    // A huge leaf may outlive the enabling of dirty logging, write-protected
    // (the next write fault replaces it with 4K leaves); a writable one
    // would let writes go unlogged at a granularity the log cannot express.
    if (s->dirty_log && l.level > 1 && spte::is_writable(l.spte))
      return fmt::format("writable_huge_leaf_while_logging: gfn {:#x} is writable at L{} in slot {}, which logs dirty "
                         "pages", l.gfn, l.level, id);
    if (s->dirty_log && spte::is_writable(l.spte)) {
      auto it = dirty.find(id);
      if (it == dirty.end()) {
        std::vector<uint64_t> bits;
        mmu.peek_dirty_log(id, bits);
        it = dirty.emplace(id, std::move(bits)).first;
      }
      // A writable leaf lets the guest write without an exit: unless the
      // page is already in the log, such a write would be lost.
      if (!bit(it->second, l.gfn - s->base))
        return fmt::format("writable_leaf_not_logged: gfn {:#x} in slot {} is writable but not in the dirty log", l.gfn, id);
    }
  }
  for (int level = 1; level <= kMaxHugeLevel; level++)
    if (mmu.pages(level) != counted[level - 1])
      return fmt::format("page_stats: stat.pages[{}] says {}, the roots hold {} leaves at L{}", level - 1,
                         mmu.pages(level), counted[level - 1], level);
  const auto w = mmu.warnings();
  if (!w.empty()) return fmt::format("site_fired: {}{}", w[0], w.size() > 1 ? fmt::format(" (and {} more)", w.size() - 1) : "");
  return "";
}

std::string check_dirty_log(const DirectLayout::Slot& slot, const std::vector<uint64_t>& written,
                            const std::vector<uint64_t>& collected) {
  for (size_t w = 0; w < written.size(); w++) {
    const uint64_t lost = written[w] & ~(w < collected.size() ? collected[w] : 0);
    if (lost)
      return fmt::format("lost_dirty_page: gfn {:#x} was written but is not in the dirty log",
                         slot.base + w * 64 + __builtin_ctzll(lost));
  }
  return "";
}

}  // namespace mirrormmu
