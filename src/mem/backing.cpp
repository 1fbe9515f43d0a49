#include "mem/backing.h"

namespace mirrormmu {

namespace {
constexpr uint64_t kBlock = kSptePerPage;
}

Backing::Backing(PfnPool& pool, PageOwner owner, uint64_t npages, bool huge)
    : pool_(pool), owner_(owner), huge_(huge), pfns_(npages), run_((npages + kBlock - 1) / kBlock, 0) {}

Pfn Backing::get_pfn(uint64_t index, PgLevel* max_level) {
  if (index >= pfns_.size()) return kInvalidPfn;
  const uint64_t block = index / kBlock;
  const uint64_t first = block * kBlock;
  if (!pfns_[index].valid()) {
    const bool whole_block_free = first + kBlock <= pfns_.size() && [&] {
      for (uint64_t i = first; i < first + kBlock; i++)
        if (pfns_[i].valid()) return false;
      return true;
    }();
    Pfn run = (huge_ && whole_block_free) ? pool_.alloc_run_2m(owner_) : kInvalidPfn;
    if (run.valid()) {
      for (uint64_t i = 0; i < kBlock; i++) pfns_[first + i] = run + i;
      run_[block] = 1;
      populated_ += kBlock;
    } else {
      const Pfn p = pool_.alloc(owner_);
      if (!p.valid()) return kInvalidPfn;
      pfns_[index] = p;
      populated_++;
    }
  }
  if (max_level) *max_level = run_[block] ? PgLevel::k2M : PgLevel::k4K;
  return pfns_[index];
}

void Backing::punch_hole(uint64_t first, uint64_t n) {
  for (uint64_t i = first; i < first + n && i < pfns_.size(); i++) {
    if (!pfns_[i].valid()) continue;
    pool_.free(pfns_[i], owner_);
    pfns_[i] = kInvalidPfn;
    run_[i / kBlock] = 0;
    populated_--;
  }
}

void Backing::release_all() { punch_hole(0, pfns_.size()); }

}  // namespace mirrormmu
