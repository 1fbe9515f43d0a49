// SPDX-License-Identifier: MIT
#include "mem/pfn_pool.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>

#include "base/page_blocks.h"
#include "base/zeroed_arrays.h"
#include "sync/det_engine.h"

namespace mirrormmu {

const char* page_owner_name(PageOwner o) {
  switch (o) {
    case PageOwner::Free: return "free";
    case PageOwner::PageTable: return "KVM page table";
    case PageOwner::SeptPage: return "S-EPT page";
    case PageOwner::GuestPrivate: return "TD private page";
    case PageOwner::GuestShared: return "shared guest page";
    case PageOwner::TdControl: return "TD control page";
    case PageOwner::Pamt: return "PAMT page";
    case PageOwner::HostSource: return "PAGE.ADD source";
    case PageOwner::TdxPool: return "TDX S-EPT pool";
    case PageOwner::kCount: break;
  }
  return "?";
}

PfnPool::PfnPool(uint64_t npages)
    : npages_(npages & ~uint64_t(kChunkPages - 1)),
      nchunks_(static_cast<uint32_t>(npages_ / kChunkPages)),
      owner_(npages_),
      chunk_free_(nchunks_, kChunkPages),
      chunk_first_free_(nchunks_, 0),
      chunk_written_(nchunks_, 0),
      slots_(static_cast<Slot*>(take_zeroed_array(npages_ * sizeof(Slot)))) {
  // owner_ is value-initialised: every frame starts Free without a store
  // per frame (a plain VM's pool has a million frames, and an explored
  // execution builds one: the loop was most of its time).
  static_assert(static_cast<int>(PageOwner::Free) == 0 && __cpp_lib_atomic_value_initialization >= 201911L);
  // Hand out low chunks first: pop from the back.
  whole_.reserve(nchunks_);
  for (uint32_t c = nchunks_; c-- > 0;) whole_.push_back(c);
  counts_[static_cast<size_t>(PageOwner::Free)] = npages_;
}

PfnPool::~PfnPool() {
  for (uint32_t c = 0; c < nchunks_; c++) {
    if (!chunk_written_[c]) continue;
    Slot* s = &slots_[uint64_t(c) * kChunkPages];
    for (uint32_t i = 0; i < kChunkPages; i++) page_block_free(s[i].data);
    std::memset(static_cast<void*>(s), 0, kChunkPages * sizeof(Slot));
  }
  give_back_zeroed_array(slots_, npages_ * sizeof(Slot));
}

bool PfnPool::should_fail() {
  int64_t n = fail_after_.load(std::memory_order_relaxed);
  if (n < 0) return false;
  if (n == 0) {
    failed_allocs_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  fail_after_.store(n - 1, std::memory_order_relaxed);
  return false;
}

PfnPool::Slot& PfnPool::slot(Pfn pfn) {
  chunk_written_[pfn.v / kChunkPages] = 1;
  return slots_[pfn.v];
}

Pfn PfnPool::take_from_chunk(uint32_t chunk, PageOwner owner) {
  const uint64_t base = uint64_t(chunk) * kChunkPages;
  for (uint32_t i = chunk_first_free_[chunk]; i < kChunkPages; i++) {
    if (owner_[base + i].load(std::memory_order_relaxed) == PageOwner::Free) {
      owner_[base + i].store(owner, std::memory_order_relaxed);
      chunk_first_free_[chunk] = static_cast<uint16_t>(i + 1);
      if (--chunk_free_[chunk] > 0) partial_.push_back(chunk);
      return Pfn{base + i};
    }
  }
  return kInvalidPfn;
}

Pfn PfnPool::alloc(PageOwner owner, bool with_memory) {
  uint64_t* mem = nullptr;
  if (with_memory) {
    // Allocated before taking the pool lock; page tables are filled by the
    // cache that owns them, so no zeroing here.
    mem = static_cast<uint64_t*>(page_block_alloc());
    if (!mem) return kInvalidPfn;
  }
  std::lock_guard g(mu_);
  Pfn pfn = kInvalidPfn;
  if (!should_fail()) {
    // Prefer chunks already broken up so whole chunks stay available for
    // 2M-aligned runs.
    while (!pfn.valid() && !partial_.empty()) {
      const uint32_t c = partial_.back();
      partial_.pop_back();
      if (chunk_free_[c] > 0 && chunk_free_[c] < kChunkPages) pfn = take_from_chunk(c, owner);
    }
    while (!pfn.valid() && !whole_.empty()) {
      const uint32_t c = whole_.back();
      whole_.pop_back();
      if (chunk_free_[c] == kChunkPages) pfn = take_from_chunk(c, owner);
    }
  }
  if (!pfn.valid()) {
    page_block_free(mem);
    return kInvalidPfn;
  }
  if (mem) slot(pfn).data = mem;
  flow_[static_cast<size_t>(owner)].allocated++;
  move_count(PageOwner::Free, owner, 1);
  return pfn;
}

Pfn PfnPool::alloc_run_2m(PageOwner owner) {
  std::lock_guard g(mu_);
  if (should_fail()) return kInvalidPfn;
  while (!whole_.empty()) {
    const uint32_t c = whole_.back();
    whole_.pop_back();
    if (chunk_free_[c] != kChunkPages) continue;
    const uint64_t base = uint64_t(c) * kChunkPages;
    for (uint32_t i = 0; i < kChunkPages; i++) owner_[base + i].store(owner, std::memory_order_relaxed);
    chunk_free_[c] = 0;
    flow_[static_cast<size_t>(owner)].allocated += kChunkPages;
    move_count(PageOwner::Free, owner, kChunkPages);
    return Pfn{base};
  }
  return kInvalidPfn;
}

Pfn PfnPool::alloc_run_1g(PageOwner owner) {
  std::lock_guard g(mu_);
  if (should_fail()) return kInvalidPfn;
  // Rare and large: a scan for 512 aligned, fully free chunks is fine.
  for (uint32_t first = 0; first + kChunkPages <= nchunks_; first += kChunkPages) {
    bool all_free = true;
    for (uint32_t c = first; c < first + kChunkPages && all_free; c++) all_free = chunk_free_[c] == kChunkPages;
    if (!all_free) continue;
    for (uint32_t c = first; c < first + kChunkPages; c++) {
      const uint64_t base = uint64_t(c) * kChunkPages;
      for (uint32_t i = 0; i < kChunkPages; i++) owner_[base + i].store(owner, std::memory_order_relaxed);
      chunk_free_[c] = 0;
    }
    const uint64_t n = uint64_t(kChunkPages) * kChunkPages;
    flow_[static_cast<size_t>(owner)].allocated += n;
    move_count(PageOwner::Free, owner, n);
    return Pfn{uint64_t(first) * kChunkPages};
  }
  return kInvalidPfn;
}

bool PfnPool::free(Pfn pfn, PageOwner expected) {
  if (!in_range(pfn)) {
    std::lock_guard g(mu_);
    record_violation(fmt::format("free of pfn {:#x} outside the pool", pfn.v));
    return false;
  }
  uint64_t* mem = nullptr;
  {
    std::lock_guard g(mu_);
    const PageOwner cur = owner_[pfn.v].load(std::memory_order_relaxed);
    if (cur != expected) {
      record_violation(fmt::format("{} of pfn {:#x} as {}, but it is {}",
                                   cur == PageOwner::Free ? "double free" : "free", pfn.v,
                                   page_owner_name(expected), page_owner_name(cur)));
      return false;
    }
    owner_[pfn.v].store(PageOwner::Free, std::memory_order_relaxed);
    if (cur == departures_owner_) [[unlikely]]
      note_departure(pfn);
    const uint32_t c = static_cast<uint32_t>(pfn.v / kChunkPages);
    chunk_first_free_[c] = std::min(chunk_first_free_[c], static_cast<uint16_t>(pfn.v & (kChunkPages - 1)));
    if (++chunk_free_[c] == kChunkPages)
      whole_.push_back(c);
    else if (chunk_free_[c] == 1)
      partial_.push_back(c);
    // Only a chunk that had a slot written is looked at: a 64 GiB TD frees
    // sixteen million guest frames, and clearing their slots regardless
    // made the host back the whole array (256 MiB).
    if (chunk_written_[c]) {
      Slot& sl = slots_[pfn.v];
      mem = sl.data;
      if (mem != nullptr || sl.priv != nullptr) sl = {};
    }
    flow_[static_cast<size_t>(cur)].freed++;
    move_count(cur, PageOwner::Free, 1);
  }
  // Really freed, so a walker that still dereferences it is a use-after-free
  // that ASan reports; under the deterministic engine it is quarantined
  // instead, and the engine reports any later access.
  if (mem) {
    if (sync::DetEngine* e = sync::DetEngine::active())
      e->quarantine(mem);
    else
      page_block_free(mem);
  }
  return true;
}

bool PfnPool::transfer(Pfn pfn, PageOwner from, PageOwner to) {
  std::lock_guard g(mu_);
  PageOwner cur = from;
  if (!in_range(pfn) || !owner_[pfn.v].compare_exchange_strong(cur, to)) {
    record_violation(fmt::format("transfer of pfn {:#x} from {} to {}, but it is {}", pfn.v,
                                 page_owner_name(from), page_owner_name(to),
                                 in_range(pfn) ? page_owner_name(cur) : "out of range"));
    return false;
  }
  flow_[static_cast<size_t>(from)].transferred_out++;
  if (from == departures_owner_) [[unlikely]]
    note_departure(pfn);
  flow_[static_cast<size_t>(to)].transferred_in++;
  move_count(from, to, 1);
  return true;
}

PfnPool::OwnerFlow PfnPool::flow(PageOwner o) const {
  std::lock_guard g(mu_);
  return flow_[static_cast<size_t>(o)];
}

void PfnPool::set_page_private(Pfn pfn, void* p) {
  std::lock_guard g(mu_);
  slot(pfn).priv = p;
}

void PfnPool::record_violation(std::string what) {
  nviolations_.fetch_add(1, std::memory_order_relaxed);
  if (violations_.size() < 64) violations_.push_back(std::move(what));
}

std::vector<std::string> PfnPool::violation_log() const {
  std::lock_guard g(mu_);
  return violations_;
}

}  // namespace mirrormmu
