#include "mem/backing.h"

#include <algorithm>

namespace mirrormmu {

namespace {
constexpr uint64_t kBlock = kSptePerPage;
}

Backing::Backing(PfnPool& pool, PageOwner owner, uint64_t npages, PgLevel huge)
    : pool_(pool), owner_(owner), huge_(huge), pfns_(npages), run_((npages + kBlock - 1) / kBlock, PgLevel::k4K) {}

// Backs the whole aligned `level` block around `index` with one run, if the
// block lies inside the backing, nothing in it is populated yet, and the
// pool has such a run.
bool Backing::try_run(uint64_t index, PgLevel level) {
  const uint64_t n = pages_per_hpage(level);
  const uint64_t first = index & ~(n - 1);
  if (first + n > pfns_.size()) return false;
  for (uint64_t i = first; i < first + n; i++)
    if (pfns_[i].valid()) return false;
  const Pfn run = level == PgLevel::k1G ? pool_.alloc_run_1g(owner_) : pool_.alloc_run_2m(owner_);
  if (!run.valid()) return false;
  for (uint64_t i = 0; i < n; i++) pfns_[first + i] = run + i;
  for (uint64_t b = first / kBlock; b < (first + n) / kBlock; b++) run_[b] = level;
  populated_ += n;
  return true;
}

Pfn Backing::peek_pfn(uint64_t index) const {
  std::lock_guard g(mu_);
  return index < pfns_.size() ? pfns_[index] : kInvalidPfn;
}

Pfn Backing::get_pfn(uint64_t index, PgLevel* max_level) {
  std::lock_guard g(mu_);
  if (index >= pfns_.size()) return kInvalidPfn;
  if (!pfns_[index].valid()) {
    bool done = false;
    for (PgLevel l = huge_; l > PgLevel::k4K && !done; l = lower(l)) done = try_run(index, l);
    if (!done) {
      const Pfn p = pool_.alloc(owner_);
      if (!p.valid()) return kInvalidPfn;
      pfns_[index] = p;
      populated_++;
    }
  }
  if (max_level) *max_level = run_[index / kBlock];
  return pfns_[index];
}

void Backing::punch_hole(uint64_t first, uint64_t n) {
  std::lock_guard g(mu_);
  for (uint64_t i = first; i < first + n && i < pfns_.size(); i++) {
    if (!pfns_[i].valid()) continue;
    pool_.free(pfns_[i], owner_);
    pfns_[i] = kInvalidPfn;
    // A freed page breaks the run it was part of: every block of it drops
    // to 4K (a 1G run broken in one place still has whole 2M runs, but
    // tracking that is not worth it).
    const PgLevel l = run_[i / kBlock];
    const uint64_t span = pages_per_hpage(l) / kBlock;
    const uint64_t b0 = (i / kBlock) & ~(span ? span - 1 : 0);
    for (uint64_t b = b0; b < b0 + std::max<uint64_t>(span, 1) && b < run_.size(); b++)
      if (run_[b] == l) run_[b] = PgLevel::k4K;
    populated_--;
  }
}

void Backing::release_all() { punch_hole(0, pfns_.size()); }

}  // namespace mirrormmu
