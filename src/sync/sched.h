// SPDX-License-Identifier: MIT
// Scheduling points: the seam between the MMU code and the execution engine.
//
// Every place where another thread could interleave (lock operations, SPTE
// reads-for-update, cmpxchg, stores, SEAMCALL entry, module try-locks, RCU
// sections, yields in long walks) calls sched_point(). With the native engine
// this is one predictable, never-taken branch on a global flag: real threads
// interleave for real. The deterministic engine (issue 3) installs a handler
// that switches virtual threads here.
#pragma once

#include <atomic>
#include <cstdint>

namespace mirrormmu::sync {

enum class PointKind : uint8_t {
  LockAcquire,
  LockRelease,
  // Taking a lock shared: the step reads the writer's state and adds to the
  // reader count, so two of them commute.
  LockAcquireShared,
  SpteRead,
  SpteCmpxchg,
  SpteStore,
  Seamcall,
  ModuleTryLock,
  RcuReadLock,
  RcuReadUnlock,
  Yield,
  GuestAccess,  // a vCPU's guest touches memory: the TLB, else a walk of its root
  // A vCPU between two guest instructions: a kick lands here. The step
  // reads and writes that vCPU's mode and kick flags, which a kicker names
  // too (sched_touch on the vCPU).
  InstructionBoundary,
};
const char* point_kind_name(PointKind k);

using SchedHandler = void (*)(PointKind kind, const void* object);

namespace detail {
extern std::atomic<SchedHandler> g_handler;
}

inline void sched_point(PointKind kind, const void* object = nullptr) {
  SchedHandler h = detail::g_handler.load(std::memory_order_relaxed);
  if (h != nullptr) [[unlikely]] h(kind, object);
}

// A step (the code between two scheduling points) that changes shared state
// no scheduling point names (the page pool, the TDP MMU's page lists) says
// so here, so that partial-order reduction never treats it as independent of
// another step doing the same. Natively the same never-taken branch.
namespace detail {
void touch_slow(const void* object);
}
inline void sched_touch(const void* object) {
  if (detail::g_handler.load(std::memory_order_relaxed) != nullptr) [[unlikely]] detail::touch_slow(object);
}

// An engine steers the threads (every interleaving is its choice, and it
// reports a loop that never ends as a livelock).
inline bool sched_steered() { return detail::g_handler.load(std::memory_order_relaxed) != nullptr; }

// Installed by an engine before it starts threads, removed after they end.
void set_sched_handler(SchedHandler h);

// Waiting for a condition another thread will establish (a vCPU leaving the
// guest, a zap finishing). Callers loop: `while (!cond) wait_event(obj);`.
// Natively this yields the CPU; under the deterministic engine the thread
// leaves the runnable set until wake_event(obj), so a spin can't livelock.
void wait_event(const void* object);
void wake_event(const void* object);

// cond_resched() in a loop that retries until another thread makes
// progress (TDX's local fault retry). Natively a plain yield. The
// deterministic engine runs another runnable thread if there is one, as a
// voluntary switch that costs no preemption: a retry loop must not eat the
// search, and if nothing else can run the loop spins on until the step
// limit calls it a livelock.
void cond_resched_spin(const void* object);

// A long walk asks whether to yield even though nobody waits for mmu_lock:
// the deterministic engine may say yes (a forced yield), nothing else does.
bool forced_yield();

}  // namespace mirrormmu::sync
