// SPDX-License-Identifier: MIT
// RCU for page tables, on liburcu (the memb flavour, which needs no signals
// and lets readers be cheap). Every TDP MMU walker runs inside a read-side
// section; a table unlinked from the tree is freed only through call_rcu.
#pragma once

#include "base/sanitizers.h"

// liburcu's read-side lock and unlock inlined (its README allows it for
// LGPL-compatible code, which MIT is): called, they reached the reader's
// thread-local state through __tls_get_addr on every fault. Not under TSan,
// which would see the inlined reader counter's plain accesses as races with
// the grace-period thread it cannot see synchronise.
#if !defined(MIRRORMMU_TSAN) && !defined(_LGPL_SOURCE)
#define _LGPL_SOURCE
#define MIRRORMMU_DEFINED_LGPL_SOURCE
#endif
#include <urcu/urcu-memb.h>
#ifdef MIRRORMMU_DEFINED_LGPL_SOURCE
#undef _LGPL_SOURCE
#undef MIRRORMMU_DEFINED_LGPL_SOURCE
#endif

#include <atomic>

#include "sync/sched.h"

namespace mirrormmu::sync {

using RcuHead = struct rcu_head;
using RcuCallback = void (*)(RcuHead*);

namespace detail {
// How many RcuThread guards the thread is inside. Constinit, so a fault's
// guard is an increment of an %fs-relative word, not a call.
extern constinit thread_local int tl_rcu_registered;
void rcu_register_thread();
void rcu_unregister_thread();
}  // namespace detail

// Registers the calling thread as an RCU reader for its lifetime in scope.
// Nesting is allowed; only the outermost guard registers.
class RcuThread {
 public:
  RcuThread() {
    if (detail::tl_rcu_registered++ == 0) [[unlikely]]
      detail::rcu_register_thread();
  }
  ~RcuThread() {
    if (--detail::tl_rcu_registered == 0) [[unlikely]]
      detail::rcu_unregister_thread();
  }
  RcuThread(const RcuThread&) = delete;
  RcuThread& operator=(const RcuThread&) = delete;
};

namespace detail {
// ThreadSanitizer cannot see liburcu's grace periods (the library is not
// instrumented), so the wrappers tell it: every read-side unlock releases a
// token that an RCU callback acquires before it frees anything.
#ifdef MIRRORMMU_TSAN
inline constexpr bool kTsan = true;
#else
inline constexpr bool kTsan = false;
#endif
void tsan_release(const void* addr);
void tsan_acquire(const void* addr);
extern char g_rcu_token;

// Set while the deterministic engine runs: RCU is then modelled by it.
extern std::atomic<bool> g_det_rcu;
void det_rcu_read_lock();
void det_rcu_read_unlock();
}  // namespace detail

inline void rcu_read_lock() {
  sched_point(PointKind::RcuReadLock);
  if (detail::g_det_rcu.load(std::memory_order_relaxed)) [[unlikely]]
    detail::det_rcu_read_lock();
  else
    urcu_memb_read_lock();
}
inline void rcu_read_unlock() {
  if (detail::g_det_rcu.load(std::memory_order_relaxed)) [[unlikely]] {
    detail::det_rcu_read_unlock();
  } else {
    if constexpr (detail::kTsan) detail::tsan_release(&detail::g_rcu_token);
    urcu_memb_read_unlock();
  }
  sched_point(PointKind::RcuReadUnlock);
}
bool rcu_read_lock_held();

class RcuReadGuard {
 public:
  RcuReadGuard() { rcu_read_lock(); }
  ~RcuReadGuard() { rcu_read_unlock(); }
  RcuReadGuard(const RcuReadGuard&) = delete;
  RcuReadGuard& operator=(const RcuReadGuard&) = delete;
};

void call_rcu(RcuHead* head, RcuCallback fn);
// First thing an RCU callback does (for ThreadSanitizer's benefit).
inline void rcu_callback_enter(RcuHead* head) {
  if constexpr (detail::kTsan) {
    detail::tsan_acquire(head);
    detail::tsan_acquire(&detail::g_rcu_token);
  }
}
// Waits until every callback queued so far has run.
void rcu_barrier();

}  // namespace mirrormmu::sync
