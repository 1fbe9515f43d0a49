// SPDX-License-Identifier: MIT
#include "mem/backing.h"

#include <algorithm>
#include <new>
#include <stdexcept>

#include "base/zeroed_arrays.h"

namespace mirrormmu {

void Backing::store(uint64_t i, Pfn p) {
  const uint32_t was = std::atomic_ref<uint32_t>(frames_[i]).load(std::memory_order_relaxed);
  const uint32_t now = p.valid() ? static_cast<uint32_t>(p.v + 1) : 0;
  if ((was == 0) != (now == 0)) block_frames_[i / kBlockPages] += now ? 1 : -1;
  std::atomic_ref<uint32_t>(frames_[i]).store(now, std::memory_order_release);
}

Backing::Backing(PfnPool& pool, PageOwner owner, uint64_t npages, PgLevel huge)
    : pool_(pool),
      owner_(owner),
      huge_(huge),
      npages_(npages),
      frames_(nullptr),
      block_frames_(new uint16_t[(npages + kBlockPages - 1) / kBlockPages]()),
      run_(new std::atomic<PgLevel>[(npages + kBlockPages - 1) / kBlockPages]),
      nblocks_((npages + kBlockPages - 1) / kBlockPages) {
  if (pool.size() >= kFrameLimit) throw std::length_error("Backing: a pool of 2^32 frames or more needs 64-bit frame arrays");
  frames_ = static_cast<uint32_t*>(take_zeroed_array(npages * sizeof(uint32_t)));
  for (uint64_t b = 0; b < nblocks_; b++) run_[b].store(PgLevel::k4K, std::memory_order_relaxed);
}

Backing::~Backing() {
  // Every frame back to the pool leaves the array zero, as the next taker
  // expects it.
  release_all();
  give_back_zeroed_array(frames_, npages_ * sizeof(uint32_t));
  delete[] prot_.load();
}

void Backing::protect(uint64_t first, uint64_t n, HostProt p) {
  std::lock_guard g(mu_);
  std::atomic<uint8_t>* pr = prot_.load(std::memory_order_relaxed);
  if (!pr) {
    pr = new std::atomic<uint8_t>[npages_];
    for (uint64_t i = 0; i < npages_; i++) pr[i].store(uint8_t(HostProt::ReadWrite), std::memory_order_relaxed);
    prot_.store(pr, std::memory_order_release);
  }
  for (uint64_t i = first; i < std::min(npages_, first + n); i++) pr[i].store(uint8_t(p), std::memory_order_release);
}

// Backs the whole aligned `level` block around `index` with one run, if the
// block lies inside the backing, nothing in it is populated yet, and the
// pool has such a run. Called with mu_ held.
bool Backing::try_run(uint64_t index, PgLevel level) {
  const uint64_t n = pages_per_hpage(level);
  const uint64_t first = index & ~(n - 1);
  if (first + n > npages_) return false;
  for (uint64_t i = first; i < first + n; i++)
    if (load(i).valid()) return false;
  const Pfn run = level == PgLevel::k1G ? pool_.alloc_run_1g(owner_) : pool_.alloc_run_2m(owner_);
  if (!run.valid()) return false;
  for (uint64_t b = first / kBlockPages; b < (first + n) / kBlockPages; b++) run_[b].store(level, std::memory_order_relaxed);
  for (uint64_t i = 0; i < n; i++) store(first + i, run + i);
  populated_ += n;
  return true;
}

Pfn Backing::populate(uint64_t index, PgLevel* max_level) {
  Pfn p;
  {
    std::lock_guard g(mu_);
    p = load(index);
    if (!p.valid()) {
      bool done = false;
      for (PgLevel l = huge_; l > PgLevel::k4K && !done; l = lower(l)) done = try_run(index, l);
      if (!done) {
        p = pool_.alloc(owner_);
        if (!p.valid()) return kInvalidPfn;
        store(index, p);
        populated_++;
      }
      p = load(index);
    }
  }
  if (max_level) *max_level = run_[index / kBlockPages].load(std::memory_order_relaxed);
  return p;
}

void Backing::punch_hole(uint64_t first, uint64_t n) {
  std::lock_guard g(mu_);
  for (uint64_t i = first; i < first + n && i < npages_; i++) {
    if (block_frames_[i / kBlockPages] == 0) {
      i |= kBlockPages - 1;  // nothing in this block: on to the next
      continue;
    }
    const Pfn p = load(i);
    if (!p.valid()) continue;
    // A freed page breaks the run it was part of: every block of it drops
    // to 4K (a 1G run broken in one place still has whole 2M runs, but
    // tracking that is not worth it).
    const PgLevel l = run_[i / kBlockPages].load(std::memory_order_relaxed);
    const uint64_t span = std::max<uint64_t>(pages_per_hpage(l) / kBlockPages, 1);
    const uint64_t b0 = (i / kBlockPages) & ~(span - 1);
    for (uint64_t b = b0; b < b0 + span && b < nblocks_; b++)
      if (run_[b].load(std::memory_order_relaxed) == l) run_[b].store(PgLevel::k4K, std::memory_order_relaxed);
    store(i, kInvalidPfn);
    pool_.free(p, owner_);
    populated_--;
  }
}

void Backing::release_all() { punch_hole(0, npages_); }

}  // namespace mirrormmu
