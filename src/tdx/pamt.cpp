// SPDX-License-Identifier: MIT
#include "tdx/pamt.h"

#include <algorithm>

namespace mirrormmu::tdx {

bool Pamt::all_nda(Pfn base, uint64_t count) const {
  if (!range_in(base, count)) return false;
  const auto first = entries_.begin() + static_cast<ptrdiff_t>(base.v);
  return std::all_of(first, first + static_cast<ptrdiff_t>(count),
                     [](uint8_t e) { return (e & kTypeMask) == static_cast<uint8_t>(PamtType::Nda); });
}

void Pamt::set(Pfn base, int size_level, PamtType type, bool dirties_cache) {
  const auto value = static_cast<uint8_t>(static_cast<uint8_t>(type) | (static_cast<uint8_t>(size_level) << kSizeShift) |
                                          (dirties_cache ? kCacheDirty : 0));
  uint8_t* e = entries_.data() + base.v;
  for (uint64_t i = 0, n = frames(size_level); i < n; i++) e[i] = static_cast<uint8_t>((e[i] & kCacheDirty) | value);
}

void Pamt::clear(Pfn base, int size_level) {
  uint8_t* e = entries_.data() + base.v;
  for (uint64_t i = 0, n = frames(size_level); i < n; i++) e[i] &= kCacheDirty;
  bepoch_.erase(base.v);
}

void Pamt::clean_all_caches() {
  for (uint8_t& e : entries_) e &= static_cast<uint8_t>(~kCacheDirty);
}

std::optional<Pamt::PagePair> Pamt::pair(Pfn frame) const {
  if (!frame.valid()) return std::nullopt;
  auto it = pairs_.find(region_of(frame));
  if (it == pairs_.end()) return std::nullopt;
  return it->second;
}

void Pamt::install_pair(Pfn region_base, Pfn page0, Pfn page1) {
  set(page0, 0, PamtType::Pamt);
  set(page1, 0, PamtType::Pamt);
  pairs_[region_of(region_base)] = PagePair{page0, page1};
}

void Pamt::remove_pair(Pfn region_base) {
  auto it = pairs_.find(region_of(region_base));
  if (it == pairs_.end()) return;
  clear(it->second.page0, 0);
  clear(it->second.page1, 0);
  pairs_.erase(it);
}

std::optional<uint64_t> Pamt::first_4k_in_use(Pfn region_base) const {
  const uint64_t n = frames(1);
  for (uint64_t i = 0; i < n; ++i) {
    const Pfn f = region_base + i;
    if (!in_range(f)) break;
    const PamtType t = type(f);
    if (size_level(f) == 0 && t != PamtType::Nda && t != PamtType::Pamt) return i;
  }
  return std::nullopt;
}

}  // namespace mirrormmu::tdx
