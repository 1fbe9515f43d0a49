#include "tdx/pamt.h"

#include <algorithm>

namespace mirrormmu::tdx {

bool Pamt::all_nda(Pfn base, uint64_t count) const {
  if (!range_in(base, count)) return false;
  const auto first = entries_.begin() + static_cast<ptrdiff_t>(base.v);
  return std::all_of(first, first + static_cast<ptrdiff_t>(count),
                     [](uint8_t e) { return (e & kTypeMask) == static_cast<uint8_t>(PamtType::Nda); });
}

void Pamt::set(Pfn base, int size_level, PamtType type) {
  const auto value =
      static_cast<uint8_t>(static_cast<uint8_t>(type) | (static_cast<uint8_t>(size_level) << kSizeShift));
  const uint64_t n = frames(size_level);
  std::fill_n(entries_.begin() + static_cast<ptrdiff_t>(base.v), n, value);
}

void Pamt::clear(Pfn base, int size_level) {
  std::fill_n(entries_.begin() + static_cast<ptrdiff_t>(base.v), frames(size_level), uint8_t{0});
  bepoch_.erase(base.v);
}

std::optional<uint64_t> Pamt::bepoch(Pfn object) const {
  auto it = bepoch_.find(object.v);
  if (it == bepoch_.end()) return std::nullopt;
  return it->second;
}

}  // namespace mirrormmu::tdx
