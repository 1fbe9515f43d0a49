// SPDX-License-Identifier: MIT
#include "sync/rcu.h"

#include <mutex>
#include <unordered_map>

#include "sync/det_engine.h"

namespace mirrormmu::sync {

namespace detail {
constinit thread_local int tl_rcu_registered = 0;
void rcu_register_thread() { urcu_memb_register_thread(); }
void rcu_unregister_thread() { urcu_memb_unregister_thread(); }
}  // namespace detail

#ifdef MIRRORMMU_TSAN
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace detail {
char g_rcu_token;
void tsan_release(const void* addr) {
#ifdef MIRRORMMU_TSAN
  __tsan_release(const_cast<void*>(addr));
#endif
}
void tsan_acquire(const void* addr) {
#ifdef MIRRORMMU_TSAN
  __tsan_acquire(const_cast<void*>(addr));
#endif
}
std::atomic<bool> g_det_rcu{false};
void det_rcu_read_lock() { DetEngine::active()->rcu_read_lock(); }
void det_rcu_read_unlock() { DetEngine::active()->rcu_read_unlock(); }
}  // namespace detail

bool rcu_read_lock_held() {
  if (DetEngine* e = DetEngine::active()) return e->rcu_read_lock_held();
  return urcu_memb_read_ongoing() != 0;
}

namespace {
// call_rcu()s issued natively, and how many of them the last completed
// barrier covered: a barrier with nothing new queued returns at once
// instead of waiting out the callback thread's batching delay.
std::atomic<uint64_t> g_native_calls{0};
std::atomic<uint64_t> g_covered{0};

// Under ThreadSanitizer, what a callback did must happen-before whatever
// follows the rcu_barrier() that waited for it (freeing the object that owns
// the pool the callback returned pages to, say). liburcu's callback thread
// is invisible to TSan, so each callback runs through a trampoline that
// releases a token the barrier acquires.
char g_barrier_token;
std::mutex g_tsan_mu;
std::unordered_map<RcuHead*, RcuCallback>& tsan_callbacks() {
  static std::unordered_map<RcuHead*, RcuCallback> m;
  return m;
}
void tsan_trampoline(RcuHead* head) {
  RcuCallback fn;
  {
    std::lock_guard g(g_tsan_mu);
    auto it = tsan_callbacks().find(head);
    fn = it->second;
    tsan_callbacks().erase(it);
  }
  fn(head);  // may free head
  detail::tsan_release(&g_barrier_token);
}
}  // namespace

void call_rcu(RcuHead* head, RcuCallback fn) {
  if (DetEngine* e = DetEngine::active()) {
    e->call_rcu(head, fn);
  } else {
    g_native_calls.fetch_add(1);
    if constexpr (detail::kTsan) {
      detail::tsan_release(head);
      {
        std::lock_guard g(g_tsan_mu);
        tsan_callbacks()[head] = fn;
      }
      urcu_memb_call_rcu(head, tsan_trampoline);
    } else {
      urcu_memb_call_rcu(head, fn);
    }
  }
}

void rcu_barrier() {
  if (DetEngine* e = DetEngine::active()) {
    e->rcu_barrier();
    return;
  }
  const uint64_t calls = g_native_calls.load();
  if (calls != g_covered.load()) {
    urcu_memb_barrier();
    // Every callback queued before the barrier started has run.
    uint64_t covered = g_covered.load();
    while (covered < calls && !g_covered.compare_exchange_weak(covered, calls)) {}
  }
  if constexpr (detail::kTsan) detail::tsan_acquire(&g_barrier_token);
}

}  // namespace mirrormmu::sync
