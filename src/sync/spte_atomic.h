// SPDX-License-Identifier: MIT
// Access to SPTE memory. A page table is a plain array of 512 uint64_t (so it
// can be memset like the kernel's pre-filled pages); every access that can
// race goes through here as an atomic_ref, and is a scheduling point.
#pragma once

#include <atomic>
#include <cstdint>

#include "sync/sched.h"

namespace mirrormmu::sync {

using SptePtr = uint64_t*;

inline std::atomic_ref<uint64_t> spte_ref(SptePtr p) { return std::atomic_ref<uint64_t>(*p); }

// READ_ONCE(*sptep). Acquire so a walker that sees a freshly linked non-leaf
// also sees the child's pre-filled entries.
inline uint64_t read_spte(SptePtr p) {
  sched_point(PointKind::SpteRead, p);
  return spte_ref(p).load(std::memory_order_acquire);
}

// WRITE_ONCE(*sptep, v).
inline void write_spte(SptePtr p, uint64_t v) {
  sched_point(PointKind::SpteStore, p);
  spte_ref(p).store(v, std::memory_order_release);
}

namespace detail {
// The deterministic engine may make a cmpxchg lose, as a racing A/D-bit
// update would (fail_tdp_mmu_cmpxchg in the kernel's fault-injection RFC).
extern std::atomic<bool> g_cmpxchg_may_lose;
bool cmpxchg_should_lose();
}  // namespace detail

// try_cmpxchg64(sptep, &old, new): on failure `old` holds the current value.
inline bool cmpxchg_spte(SptePtr p, uint64_t& old, uint64_t v) {
  sched_point(PointKind::SpteCmpxchg, p);
  if (detail::g_cmpxchg_may_lose.load(std::memory_order_relaxed)) [[unlikely]] {
    if (detail::cmpxchg_should_lose()) {
      old = spte_ref(p).load(std::memory_order_acquire);
      return false;
    }
  }
  return spte_ref(p).compare_exchange_strong(old, v, std::memory_order_acq_rel,
                                             std::memory_order_acquire);
}

inline uint64_t xchg_spte(SptePtr p, uint64_t v) {
  sched_point(PointKind::SpteCmpxchg, p);
  return spte_ref(p).exchange(v, std::memory_order_acq_rel);
}

// WRITE_ONCE(*sptep, v) as a checker sees it: the same scheduling point as
// a plain store, but it returns what the store replaced, so a bit another
// writer set since the caller read the entry cannot vanish unnoticed.
inline uint64_t write_spte_observed(SptePtr p, uint64_t v) {
  sched_point(PointKind::SpteStore, p);
  return spte_ref(p).exchange(v, std::memory_order_acq_rel);
}

// atomic64_fetch_or(): what the CPU does to set Accessed and Dirty.
inline uint64_t fetch_or_spte(SptePtr p, uint64_t bits) {
  sched_point(PointKind::SpteCmpxchg, p);
  return spte_ref(p).fetch_or(bits, std::memory_order_acq_rel);
}

// atomic64_fetch_and(): returns the old value.
inline uint64_t fetch_and_spte(SptePtr p, uint64_t mask) {
  sched_point(PointKind::SpteCmpxchg, p);
  return spte_ref(p).fetch_and(mask, std::memory_order_acq_rel);
}

}  // namespace mirrormmu::sync
