// SPDX-License-Identifier: MIT
// Counters each thread bumps in a block of its own, without a locked
// instruction: a relaxed load and store by the one thread that owns the
// block, summed by readers over every block the owner ever handed out.
// Adds wrap modulo 2^64, so a signed counter adds its negative deltas as
// unsigned ones and reads its sum back as signed.
//
// PercpuCounter shards by thread too, but threads may share a shard, so
// every add is a locked read-modify-write (10 ns or more here). For the
// statistics bumped on every SEAMCALL that was a tenth of a teardown. Here a
// block belongs to one thread for good: exact sums with plain stores.
//
// A thread finds its block through a small thread-local cache keyed by the
// owner's serial number (never reused, unlike an address): a fault bumps
// two owners of one type in turn (mmu_lock's and the memslot lock's read
// counts), so it holds four. An owner not in it takes the registry's mutex.
// Blocks live as long as the owner, so a thread that exits leaves its
// counts behind.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace mirrormmu {

template <size_t N>
class ThreadCounters {
 public:
  ThreadCounters() : serial_(next_serial().fetch_add(1, std::memory_order_relaxed) + 1) {}
  ThreadCounters(const ThreadCounters&) = delete;
  ThreadCounters& operator=(const ThreadCounters&) = delete;

  void add(size_t i, uint64_t n = 1) {
    std::atomic<uint64_t>& c = mine()[i];
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  // Test hook: every thread is handed the first block, the bug the design
  // exists to avoid (plain stores from two threads lose counts).
  enum class Flaw : uint8_t { None, OneBlock };
  void plant_flaw(Flaw f) { flaw_ = f; }

  uint64_t sum(size_t i) const {
    std::lock_guard g(mu_);
    uint64_t s = 0;
    for (const auto& b : blocks_) s += b->counts[i].load(std::memory_order_relaxed);
    return s;
  }

 private:
  // A cache line (or more) each: two threads' blocks side by side would
  // pass one line back and forth on every add.
  struct alignas(64) Block {
    std::thread::id owner;
    std::array<std::atomic<uint64_t>, N> counts{};
  };
  struct CacheEntry {
    uint64_t serial = 0;
    Block* block = nullptr;
  };
  struct Cache {
    std::array<CacheEntry, 4> e{};
    unsigned next = 0;  // the entry the next miss replaces
  };
  static std::atomic<uint64_t>& next_serial() {
    static std::atomic<uint64_t> n{0};
    return n;
  }
  static Cache& cache() {
    thread_local Cache c;
    return c;
  }

  std::array<std::atomic<uint64_t>, N>& mine() {
    Cache& c = cache();
    for (CacheEntry& e : c.e)
      if (e.serial == serial_) [[likely]]
        return e.block->counts;
    return mine_missed();
  }
  // Out of line, so that an add inlined into a fault's lock is a few loads
  // and a store, not a frame that saves every register for the mutex.
  [[gnu::noinline]] std::array<std::atomic<uint64_t>, N>& mine_missed() {
    Cache& c = cache();
    CacheEntry& e = c.e[c.next++ % c.e.size()];
    e = CacheEntry{serial_, &block_of_this_thread()};
    return e.block->counts;
  }
  Block& block_of_this_thread() {
    const std::thread::id me = std::this_thread::get_id();
    std::lock_guard g(mu_);
    for (auto& b : blocks_)
      if (b->owner == me || flaw_ == Flaw::OneBlock) return *b;
    blocks_.push_back(std::make_unique<Block>());
    blocks_.back()->owner = me;
    return *blocks_.back();
  }

  const uint64_t serial_;
  Flaw flaw_ = Flaw::None;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Block>> blocks_;
};

// One counter kept the same way, with std::atomic's spelling (the order
// argument means nothing: each block has one writer, and a reader sums).
// Signed deltas wrap modulo 2^64 and read back as T.
template <typename T>
class ThreadCounter {
 public:
  void fetch_add(T d, std::memory_order = std::memory_order_relaxed) { c_.add(0, static_cast<uint64_t>(d)); }
  void fetch_sub(T d, std::memory_order = std::memory_order_relaxed) {
    c_.add(0, uint64_t{0} - static_cast<uint64_t>(d));
  }
  T load(std::memory_order = std::memory_order_relaxed) const { return static_cast<T>(c_.sum(0)); }

 private:
  ThreadCounters<1> c_;
};

}  // namespace mirrormmu
