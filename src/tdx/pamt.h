// The module's Physical Address Metadata Table, reduced to what S-EPT
// management observes: a page type and page size per host frame, and the
// BEPOCH stamp of blocked objects.
//
// One byte per frame of the pool keeps a 64 GiB pool at 16 MiB. A 2M private
// page is recorded on each of its 512 frames with size level 1, which is how
// the model answers "is this frame part of a larger page" without a separate
// 2M table. BEPOCH lives in a map because only blocked objects carry one and
// KVM unblocks (removes) them one at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "base/types.h"
#include "tdx/module.h"

namespace mirrormmu::tdx {

class Pamt {
 public:
  explicit Pamt(uint64_t npages) : entries_(npages, 0) {}

  uint64_t size() const { return entries_.size(); }
  bool in_range(Pfn pfn) const { return pfn.valid() && pfn.v < entries_.size(); }
  // [base, base + count) lies inside the PAMT-covered range.
  bool range_in(Pfn base, uint64_t count) const {
    return in_range(base) && count <= entries_.size() - base.v;
  }

  PamtType type(Pfn pfn) const {
    return in_range(pfn) ? static_cast<PamtType>(entries_[pfn.v] & kTypeMask) : PamtType::Nda;
  }
  // Size level of the page the frame belongs to: 0 = 4K, 1 = 2M, 2 = 1G.
  int size_level(Pfn pfn) const {
    return in_range(pfn) ? (entries_[pfn.v] >> kSizeShift) & kSizeMask : 0;
  }
  bool all_nda(Pfn base, uint64_t count) const;

  // Records a page of 512^size_level frames starting at `base`.
  void set(Pfn base, int size_level, PamtType type);
  // Returns a page of 512^size_level frames to NDA and drops its BEPOCH.
  void clear(Pfn base, int size_level);

  void set_bepoch(Pfn object, uint64_t epoch) { bepoch_[object.v] = epoch; }
  std::optional<uint64_t> bepoch(Pfn object) const;
  void clear_bepoch(Pfn object) { bepoch_.erase(object.v); }

  static constexpr uint64_t frames(int size_level) { return 1ull << (kLevelBits * size_level); }

 private:
  static constexpr uint8_t kTypeMask = 0x7;
  static constexpr int kSizeShift = 3;
  static constexpr uint8_t kSizeMask = 0x3;

  std::vector<uint8_t> entries_;
  std::unordered_map<uint64_t, uint64_t> bepoch_;
};

}  // namespace mirrormmu::tdx
