// SPDX-License-Identifier: MIT
// A counter every thread adds to on its own cache line, summed when read:
// the percpu_counter of the kernel. For statistics bumped on every fault
// (two vCPU threads sharing one atomic would serialise on it); read where
// the adders are excluded (the checker holds mmu_lock for write) or where
// an approximate sum will do.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstddef>
#include <thread>

// glibc's rseq registration (<sys/rseq.h>, which this header cannot
// include: the oracle's bridge compiles it beside the kernel's own types).
// The cpu_id field sits 4 bytes into struct rseq; base/percpu_counter.cpp
// checks both against the real header.
extern "C" {
extern const std::ptrdiff_t __rseq_offset;
extern const unsigned int __rseq_size;
}

namespace mirrormmu {

namespace detail {
inline constexpr std::size_t kRseqCpuIdOffset = 4;

// A small per-thread index spreading counters over shards.
inline unsigned percpu_shard() {
  static std::atomic<unsigned> next{0};
  thread_local const unsigned mine = next.fetch_add(1, std::memory_order_relaxed);
  return mine;
}
// The CPU this thread runs on, read from the rseq area glibc registers for
// every thread (one load; the kernel keeps it current). Threads running at
// the same time are on different CPUs, so shards indexed by it are not
// written by two at once; indexed by thread number, two vCPU threads whose
// numbers had the same parity shared one of a 2-CPU machine's two shards.
// A thread may move between two uses: whoever counts itself in a shard and
// out later must remember which one, or only ever sum the shards. Without
// rseq (an old kernel, glibc.pthread.rseq=0): the thread's number.
inline unsigned current_cpu() {
  if (__rseq_size != 0) [[likely]] {
    const char* rs = static_cast<const char*>(__builtin_thread_pointer()) + __rseq_offset;
    return *reinterpret_cast<const volatile uint32_t*>(rs + kRseqCpuIdOffset);
  }
  return percpu_shard();
}
// Shards worth having for per-CPU state: one per CPU of the machine (a
// power of two, at most kMaxCpuShards), so that whoever sums them looks at
// no more cache lines than there are CPUs to fill them.
inline constexpr unsigned kMaxCpuShards = 16;
inline unsigned cpu_shards() {
  static const unsigned n =
      std::min(kMaxCpuShards, std::bit_ceil(std::max(1u, std::thread::hardware_concurrency())));
  return n;
}
}  // namespace detail

template <typename T>
class PercpuCounter {
 public:
  static constexpr unsigned kShards = 16;
  // std::atomic's spelling, so a plain atomic counter can become one; no
  // value comes back, as one shard's old value means nothing.
  void fetch_add(T delta, std::memory_order o = std::memory_order_seq_cst) {
    shards_[detail::current_cpu() % kShards].v.fetch_add(delta, o);
  }
  void fetch_sub(T delta, std::memory_order o = std::memory_order_seq_cst) {
    shards_[detail::current_cpu() % kShards].v.fetch_sub(delta, o);
  }
  T load(std::memory_order o = std::memory_order_seq_cst) const {
    T sum = 0;
    for (const Shard& s : shards_) sum += s.v.load(o);
    return sum;
  }

 private:
  struct alignas(64) Shard {
    std::atomic<T> v{0};
  };
  Shard shards_[kShards];
};

}  // namespace mirrormmu
