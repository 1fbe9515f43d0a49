// SPDX-License-Identifier: MIT
// Host physical memory: a pool of page frames, each with an owner.
//
// Only page-table pages get real 4 KiB of memory behind them (their SPTEs are
// read and written); every other frame is bookkeeping. The owner byte per
// frame is what lets the checker say "leaked", "freed twice" or "freed while
// the TDX module still owns it". Memory for a 64 GiB guest (16M frames) costs
// 16 MiB of owner bytes plus a slot of 16 bytes per frame (its memory and its
// page_private) in an array indexed by the pfn, as struct page is: reserved
// for every frame, backed by the host only where a slot was written.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "base/types.h"
#include "sync/tracked_mutex.h"

namespace mirrormmu {

enum class PageOwner : uint8_t {
  Free,
  PageTable,    // sp->spt: a KVM (direct or mirror) page table
  SeptPage,     // sp->external_spt: donated to the TDX module by SEPT.ADD
  GuestPrivate, // guest_memfd page (TD private memory)
  GuestShared,  // ordinary host memory backing shared GPAs
  TdControl,    // TDR, TDCS, TDVPR, TDCX
  Pamt,         // Dynamic PAMT page pair
  HostSource,   // PAGE.ADD source page (the initial image)
  TdxPool,      // pre-allocated by TDX for S-EPT pages, not yet handed out
  kCount
};
inline constexpr size_t kPageOwnerCount = static_cast<size_t>(PageOwner::kCount);
const char* page_owner_name(PageOwner o);

class PfnPool {
 public:
  explicit PfnPool(uint64_t npages);
  ~PfnPool();
  PfnPool(const PfnPool&) = delete;
  PfnPool& operator=(const PfnPool&) = delete;

  uint64_t size() const { return npages_; }

  // Allocates one frame. With `with_memory` the frame gets 4 KiB of real,
  // page-aligned memory (page tables). Returns kInvalidPfn when exhausted.
  Pfn alloc(PageOwner owner, bool with_memory = false);
  // A 2M-aligned run of 512 free frames, for huge-page backing.
  Pfn alloc_run_2m(PageOwner owner);
  // A 1G-aligned run of 512 * 512 free frames (hugetlbfs 1G backing).
  Pfn alloc_run_1g(PageOwner owner);
  // Returns the frame. A frame whose owner is not `expected` is not freed and
  // is recorded as a violation (a double free has owner Free).
  bool free(Pfn pfn, PageOwner expected);
  // Hands a frame from one owner to another (e.g. a source page becoming a
  // control page). Records a violation if the current owner differs.
  bool transfer(Pfn pfn, PageOwner from, PageOwner to);

  PageOwner owner(Pfn pfn) const {
    return in_range(pfn) ? owner_[pfn.v].load(std::memory_order_relaxed) : PageOwner::kCount;
  }
  bool in_range(Pfn pfn) const { return pfn.valid() && pfn.v < npages_; }

  // __va(pfn) for page-table frames: nullptr for frames without memory (and
  // for a pfn past the pool, which only a corrupted SPTE names).
  uint64_t* page_ptr(Pfn pfn) const { return pfn.v < npages_ ? slots_[pfn.v].data : nullptr; }
  // page_private(): the MMU stores the owning kvm_mmu_page here.
  void* page_private(Pfn pfn) const { return pfn.v < npages_ ? slots_[pfn.v].priv : nullptr; }
  void set_page_private(Pfn pfn, void* p);
  // Both at once, for a walker stepping into a child table. One load from
  // the SPTE to the table's memory: the chain of dependent loads down a walk
  // is what a fault waits on (a chunk table in between cost a tenth of a
  // direct fault).
  uint64_t* page_ptr_private(Pfn pfn, void** priv) const {
    if (pfn.v >= npages_) [[unlikely]] {
      *priv = nullptr;
      return nullptr;
    }
    const Slot& s = slots_[pfn.v];
    *priv = s.priv;
    return s.data;
  }

  // Page flow per owner: how pages went out (allocated as, or handed over
  // to, this owner) and how they came back (freed as it, or handed on).
  // At the end of a clean life allocated + in == freed + out per owner.
  struct OwnerFlow {
    uint64_t allocated = 0, freed = 0, transferred_in = 0, transferred_out = 0;
  };
  OwnerFlow flow(PageOwner o) const;

  uint64_t count(PageOwner o) const { return counts_[static_cast<size_t>(o)].load(std::memory_order_relaxed); }
  uint64_t in_use() const { return npages_ - count(PageOwner::Free); }

  uint64_t violations() const { return nviolations_.load(std::memory_order_relaxed); }
  std::vector<std::string> violation_log() const;

  // Frames that stop being `o` (freed, or handed to another owner) from now
  // on are logged until take_departures(): the checker's incremental pass
  // looks at those instead of scanning every frame. One owner at a time.
  void log_departures(PageOwner o) {
    std::lock_guard g(mu_);
    departures_owner_ = o;
  }
  // At most 256K are listed between two takes (a teardown would list the
  // whole guest); past that, only that there were more.
  void set_max_departures(size_t n) { max_departures_ = n; }  // test hook
  struct Departures {
    std::vector<Pfn> frames;
    bool overflowed = false;
  };
  Departures take_departures() {
    std::lock_guard g(mu_);
    return {std::exchange(departures_, {}), std::exchange(departures_overflowed_, false)};
  }
  // Test hook: make every allocation fail after `n` more succeed (-1: never).
  void fail_after(int64_t n) { fail_after_.store(n, std::memory_order_relaxed); }
  uint64_t failed_allocs() const { return failed_allocs_.load(std::memory_order_relaxed); }

 private:
  struct Slot {
    uint64_t* data = nullptr;
    void* priv = nullptr;
  };
  static constexpr uint32_t kChunkPages = kSptePerPage;

  bool should_fail();
  Pfn take_from_chunk(uint32_t chunk, PageOwner owner);
  void record_violation(std::string what);
  // The frame's slot, to write (under mu_).
  Slot& slot(Pfn pfn);

  uint64_t npages_;
  uint32_t nchunks_;
  std::vector<std::atomic<PageOwner>> owner_;
  std::vector<uint16_t> chunk_free_;
  // Per chunk, a frame index below which no frame is free: a chunk filled
  // one frame at a time is not rescanned from its start at every take.
  std::vector<uint16_t> chunk_first_free_;
  std::vector<uint32_t> whole_;    // chunks believed fully free (validated on pop)
  std::vector<uint32_t> partial_;  // chunks believed partially free
  // One slot per frame, zero until written (base/zeroed_arrays.h); a chunk
  // whose flag is clear has every slot zero.
  std::vector<uint8_t> chunk_written_;
  Slot* slots_;
  // Written only under mu_, read without it: atomics, but moved with a load
  // and a store each, not two more locked instructions per page.
  std::array<std::atomic<uint64_t>, kPageOwnerCount> counts_{};
  void move_count(PageOwner from, PageOwner to, uint64_t n) {
    auto& f = counts_[static_cast<size_t>(from)];
    auto& t = counts_[static_cast<size_t>(to)];
    f.store(f.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
    t.store(t.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  // Under mu_, like every owner change.
  std::array<OwnerFlow, kPageOwnerCount> flow_{};
  std::atomic<int64_t> fail_after_{-1};
  std::atomic<uint64_t> failed_allocs_{0};
  std::atomic<uint64_t> nviolations_{0};
  mutable sync::TrackedMutex mu_;
  std::vector<std::string> violations_;
  PageOwner departures_owner_ = PageOwner::kCount;  // kCount: nobody logs
  std::vector<Pfn> departures_;
  bool departures_overflowed_ = false;
  size_t max_departures_ = size_t{1} << 18;
  void note_departure(Pfn pfn) {
    if (departures_.size() < max_departures_)
      departures_.push_back(pfn);
    else
      departures_overflowed_ = true;
  }
};

}  // namespace mirrormmu
