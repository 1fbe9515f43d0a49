// SPDX-License-Identifier: MIT
// The module's Physical Address Metadata Table, reduced to what S-EPT
// management observes: a page type and page size per host frame, and the
// BEPOCH stamp of blocked objects.
//
// One byte per frame of the pool keeps a 64 GiB pool at 16 MiB.
//
// A spare bit of the byte is not module state but the caches': whether the
// frame has lines written under the TD's key (PAGE.AUG's or PAGE.ADD's
// initialisation) that no WBINVD has written back. The module keeps no such
// record and cannot refuse a page that still has them; handing one to the
// host is the host's bug (MK-TME aliasing), which the checker looks for.
// The bit outlives the PAMT entry (it is what REMOVE leaves the host to
// flush), so set() and clear() keep it, and type() and size_level() never
// see it. Beside the type, PAGE.AUG records both with one plain store of the
// frame's own byte, where a bitmap of its own needed a locked OR whenever
// two AUGs could run at once (64 frames share a word). A 2M private
// page is recorded on each of its 512 frames with size level 1, which is how
// the model answers "is this frame part of a larger page" without a separate
// 2M table. BEPOCH lives in a map because only blocked objects carry one and
// KVM unblocks (removes) them one at a time.
//
// Dynamic PAMT adds the 4K-PAMT page pairs: per 2M region of host frames, the
// two host pages that hold the region's 512 4K entries. They are kept in a map
// by region, since the host installs them one region at a time as it needs 4K
// TD pages there.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "base/frame_map.h"
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

  // Records a page of 512^size_level frames starting at `base`, its cache
  // lines dirtied under the TD's key if `dirties_cache` (or still dirty).
  void set(Pfn base, int size_level, PamtType type, bool dirties_cache = false);
  // Returns a page of 512^size_level frames to NDA and drops its BEPOCH.
  void clear(Pfn base, int size_level);

  // ---- cache lines under the TD's key ----------------------------------------
  bool cache_dirty(Pfn pfn) const { return in_range(pfn) && (entries_[pfn.v] & kCacheDirty) != 0; }
  // TDH.PHYMEM.PAGE.WBINVD of one frame; TDH.PHYMEM.CACHE.WB of all.
  void clean_cache(Pfn pfn) {
    if (in_range(pfn)) entries_[pfn.v] &= static_cast<uint8_t>(~kCacheDirty);
  }
  void clean_all_caches();
  // Frames [first, first + n) in order (clipped to the PAMT).
  template <class Fn>
  void for_each_cache_dirty(Fn&& fn, uint64_t first = 0, uint64_t n = ~uint64_t{0}) const {
    // Eight frames a load: the pool of a 64 GiB TD is 16 MiB of entries.
    constexpr uint64_t kAny = 0x0101010101010101ull * kCacheDirty;
    const uint64_t end = first + std::min(n, entries_.size() - std::min(first, entries_.size()));
    uint64_t i = first;
    for (; i + 8 <= end; i += 8) {
      uint64_t word;
      __builtin_memcpy(&word, &entries_[i], sizeof word);
      for (uint64_t d = word & kAny; d != 0; d &= d - 1) fn(Pfn{i + uint64_t(__builtin_ctzll(d)) / 8});
    }
    for (; i < end; i++)
      if (entries_[i] & kCacheDirty) fn(Pfn{i});
  }

  void set_bepoch(Pfn object, uint64_t epoch) { bepoch_.set(object.v, epoch); }
  std::optional<uint64_t> bepoch(Pfn object) const { return bepoch_.find(object.v); }
  void clear_bepoch(Pfn object) { bepoch_.erase(object.v); }

  static constexpr uint64_t frames(int size_level) { return 1ull << (kLevelBits * size_level); }

  // ---- Dynamic PAMT --------------------------------------------------------
  struct PagePair {
    Pfn page0, page1;
  };
  // Index of the 2M region holding `frame`.
  static constexpr uint64_t region_of(Pfn frame) { return frame.v >> kLevelBits; }
  bool has_pair(Pfn frame) const { return frame.valid() && pairs_.contains(region_of(frame)); }
  std::optional<PagePair> pair(Pfn frame) const;
  uint64_t pairs() const { return pairs_.size(); }
  // Lends the two pages to the region of `region_base`; they become PT_PAMT.
  void install_pair(Pfn region_base, Pfn page0, Pfn page1);
  // Takes the pair back; its pages return to NDA.
  void remove_pair(Pfn region_base);
  // The first frame (index within the region) holding a 4K entry that the
  // pair stores: size 4K and a type other than NDA. Pair pages live in the
  // module's bitmap, not in a 4K entry, so they do not count.
  std::optional<uint64_t> first_4k_in_use(Pfn region_base) const;

 private:
  static constexpr uint8_t kTypeMask = 0x7;
  static constexpr int kSizeShift = 3;
  static constexpr uint8_t kSizeMask = 0x3;
  static constexpr uint8_t kCacheDirty = 0x20;

  std::vector<uint8_t> entries_;
  // Every page a teardown removes is blocked first: one insert and one erase
  // per page, into a map that seldom holds more than a few.
  FrameMap bepoch_;
  std::unordered_map<uint64_t, PagePair> pairs_;  // by region_of()
};

}  // namespace mirrormmu::tdx
