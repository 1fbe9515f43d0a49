// SPDX-License-Identifier: MIT
// Host memory behind guest frames: a guest_memfd-like private backing for a
// TD's private memory, or ordinary (anonymous, THP-able) host memory for
// shared memory. Frames are allocated on first use; with `huge`, a 2M block
// is backed by a 2M-aligned run when the pool has one, which is what lets a
// 2M mapping exist at all.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "base/types.h"
#include "mem/pfn_pool.h"
#include "sync/sched.h"
#include "sync/tracked_mutex.h"

namespace mirrormmu {

// What the host's page tables let a user of the memory do (mprotect,
// munmap). KVM learns of a change only through the MMU notifier; the
// backing keeps what the host VMA says so a fault can look it up.
enum class HostProt : uint8_t { ReadWrite, ReadOnly, None };

class Backing {
 public:
  // `huge`: the largest page the backing tries to use (4K: none; 2M: THP or
  // guest_memfd folios; 1G: hugetlbfs 1G pages).
  Backing(PfnPool& pool, PageOwner owner, uint64_t npages, PgLevel huge);
  ~Backing();
  Backing(const Backing&) = delete;
  Backing& operator=(const Backing&) = delete;

  // The frame behind page `index`, allocating it if needed (kInvalidPfn when
  // the pool is exhausted). `max_level` is the largest mapping the backing
  // allows there: the size of the aligned run the page sits in.
  // Inline for a page that has its frame: every fault asks.
  Pfn get_pfn(uint64_t index, PgLevel* max_level = nullptr) {
    if (index >= npages_) return kInvalidPfn;
    // Read without mu_, and punch_hole() changes what it reads.
    sync::sched_touch(this);
    const Pfn p = load(index);
    if (!p.valid()) [[unlikely]]
      return populate(index, max_level);
    if (max_level) *max_level = run_[index / kBlockPages].load(std::memory_order_relaxed);
    return p;
  }
  Pfn peek_pfn(uint64_t index) const { return index < npages_ ? load(index) : kInvalidPfn; }
  // fallocate(PUNCH_HOLE): frees the frames of [first, first + n).
  void punch_hole(uint64_t first, uint64_t n);
  void release_all();
  // mprotect()/munmap() of [first, first + n): only the VMA changes, the
  // frames stay (a MAP_SHARED memfd keeps them). Callers bracket it with
  // the MMU notifier.
  void protect(uint64_t first, uint64_t n, HostProt p);
  HostProt prot(uint64_t index) const {
    const std::atomic<uint8_t>* pr = prot_.load(std::memory_order_acquire);
    return pr && index < npages_ ? static_cast<HostProt>(pr[index].load(std::memory_order_acquire))
                                 : HostProt::ReadWrite;
  }

  uint64_t npages() const { return npages_; }
  uint64_t populated() const {
    std::lock_guard g(mu_);
    return populated_;
  }
  PageOwner owner() const { return owner_; }

 private:
  // vCPU threads fault in pages concurrently: a populated page is found
  // without a lock (as the page cache lookup is), populating or punching
  // takes the mutex (the filemap's own locking).
  mutable sync::TrackedMutex mu_;
  PfnPool& pool_;
  PageOwner owner_;
  bool try_run(uint64_t index, PgLevel level);

  // A frame per page, as pfn + 1 (0: none), in an array indexed by the page
  // (base/zeroed_arrays.h): one load from a page to its frame. The host
  // backs only the pages of the array written, so memory never populated (a
  // memslot's shared side the guest never converts) costs nothing. Frames
  // are 32-bit (pools are far below 2^32 frames; the constructor checks): at
  // 64 GiB of guest the array is 64 MiB, not 128. Lock-free readers use
  // atomic_ref on it.
  static constexpr uint64_t kBlockPages = kSptePerPage;
  // pfn + 1 must fit in 32 bits.
  static constexpr uint64_t kFrameLimit = ~uint32_t{0};
  Pfn load(uint64_t i) const {
    const uint32_t f = std::atomic_ref<uint32_t>(frames_[i]).load(std::memory_order_acquire);
    return f == 0 ? kInvalidPfn : Pfn{f - 1};
  }
  void store(uint64_t i, Pfn p);  // under mu_
  // get_pfn() of a page without a frame (yet: another thread may give it
  // one first).
  Pfn populate(uint64_t index, PgLevel* max_level);

  PgLevel huge_;
  uint64_t npages_;
  uint32_t* frames_;
  // Per 2M block, under mu_: how many of its pages have a frame, so that a
  // punch over memory never populated skips it a block at a time.
  std::unique_ptr<uint16_t[]> block_frames_;
  std::unique_ptr<std::atomic<PgLevel>[]> run_;  // per 2M block: the level of the aligned run backing it
  uint64_t nblocks_;
  uint64_t populated_ = 0;
  // A byte per page, made on the first protect(): memory nobody protects
  // (all a TD's guest_memfd) pays nothing for it.
  std::atomic<std::atomic<uint8_t>*> prot_{nullptr};
};

}  // namespace mirrormmu
