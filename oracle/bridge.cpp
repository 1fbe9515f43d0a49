// SPDX-License-Identifier: GPL-2.0-only
// The C side of the shim (kshim/bridge.h) on mirrormmu's src/sync: the
// kernel's mmu_lock is a sync::MmuLock, its RCU is ours (liburcu natively,
// the engine's model under the deterministic engine), and each SPTE access
// is a scheduling point, so the real tdp_mmu.c interleaves exactly where
// our model does.
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#include "base/inject.h"
#include "oracle/bridge_cpp.h"
#include "sync/det_engine.h"
#include "sync/mmu_lock.h"
#include "sync/rcu.h"
#include "sync/sched.h"
#include "sync/spte_atomic.h"

extern "C" {
#include <cstdint>
typedef uint64_t u64;
#include "kshim/bridge.h"
void kshim_report_warn(const char* cond, const char* file, int line);
}

namespace mirrormmu::oracle {
std::atomic<FaultInjector*> g_injector{nullptr};
}

using mirrormmu::sync::MmuLock;

namespace {
MmuLock& lock_of(const rwlock_t* l) { return *static_cast<MmuLock*>(l->impl); }

// liburcu keeps its head in the first two words; the third holds the tree's
// callback so a trampoline can tell ThreadSanitizer about the grace period.
static_assert(sizeof(::rcu_head) <= 2 * sizeof(void*));
void rcu_trampoline(::rcu_head* h) {
  mirrormmu::sync::rcu_callback_enter(h);
  auto* kh = reinterpret_cast<kshim_rcu_head*>(h);
  auto fn = reinterpret_cast<void (*)(kshim_rcu_head*)>(kh->space[2]);
  fn(kh);
}

// The tree's code runs on whatever thread calls it: register it with
// liburcu the first time it reads (RcuThread nests, so a vCPU thread that
// registered already is not registered twice).
void ensure_rcu_thread() {
  static thread_local mirrormmu::sync::RcuThread reg;
  (void)reg;
}

constexpr size_t kTableBlock = 8192;  // the table, then its struct page
}  // namespace

extern "C" {

void kshim_warn(const char* cond, const char* file, int line, int once) {
  (void)once;  // every firing is recorded, WARN_ON_ONCE included: a test wants each one
  kshim_report_warn(cond, file, line);
}

void kshim_bug(const char* cond, const char* file, int line) {
  kshim_report_warn(cond, file, line);
  throw mirrormmu::oracle::KernelBug(std::string("BUG_ON(") + cond + ") at " + file + ":" + std::to_string(line));
}

void kshim_rwlock_init(rwlock_t* l) { l->impl = new MmuLock(); }
void kshim_rwlock_destroy(rwlock_t* l) {
  delete static_cast<MmuLock*>(l->impl);
  l->impl = nullptr;
}
void kshim_read_lock(rwlock_t* l) { lock_of(l).read_lock(); }
void kshim_read_unlock(rwlock_t* l) { lock_of(l).read_unlock(); }
void kshim_write_lock(rwlock_t* l) { lock_of(l).write_lock(); }
void kshim_write_unlock(rwlock_t* l) { lock_of(l).write_unlock(); }
int kshim_rwlock_held(const rwlock_t* l) {
  switch (lock_of(l).held_by_me()) {
    case mirrormmu::sync::LockMode::None: return 0;
    case mirrormmu::sync::LockMode::Read: return 1;
    case mirrormmu::sync::LockMode::Write: return 2;
  }
  return 0;
}
bool kshim_rwlock_needbreak(const rwlock_t* l) { return lock_of(l).contended(); }

void kshim_rcu_read_lock(void) {
  ensure_rcu_thread();
  mirrormmu::sync::rcu_read_lock();
}
void kshim_rcu_read_unlock(void) { mirrormmu::sync::rcu_read_unlock(); }
bool kshim_rcu_read_lock_held(void) { return mirrormmu::sync::rcu_read_lock_held(); }
void kshim_call_rcu(kshim_rcu_head* head, void (*fn)(kshim_rcu_head*)) {
  ensure_rcu_thread();
  head->space[2] = reinterpret_cast<void*>(fn);
  mirrormmu::sync::call_rcu(reinterpret_cast<::rcu_head*>(head), rcu_trampoline);
}
void kshim_rcu_barrier(void) {
  ensure_rcu_thread();
  mirrormmu::sync::rcu_barrier();
}

bool kshim_need_resched(void) { return mirrormmu::sync::forced_yield(); }
void kshim_cond_resched(void) { mirrormmu::sync::sched_point(mirrormmu::sync::PointKind::Yield); }
void kshim_cond_resched_spin(const void* object) { mirrormmu::sync::cond_resched_spin(object); }
void kshim_touch(const void* object) { mirrormmu::sync::sched_touch(object); }

void* kshim_spte_deref(void* sptep) {
  mirrormmu::sync::sched_point(mirrormmu::sync::PointKind::SpteRead, sptep);
  return sptep;
}
bool kshim_try_cmpxchg64(u64* p, u64* old, u64 v) { return mirrormmu::sync::cmpxchg_spte(p, *old, v); }
u64 kshim_xchg64(u64* p, u64 v) { return mirrormmu::sync::xchg_spte(p, v); }
u64 kshim_fetch_and64(u64* p, u64 mask) { return mirrormmu::sync::fetch_and_spte(p, mask); }

void* kshim_alloc_table_page(void) {
  void* p = std::aligned_alloc(kTableBlock, kTableBlock);
  if (p) std::memset(p, 0, kTableBlock);
  return p;
}
void kshim_free_table_page(void* page) {
  if (!page) return;
  kmmu_table_freed(page);
  // A table freed while the engine runs is kept until the execution ends,
  // and any later SPTE access into it is reported as a use after the grace
  // period (the engine frees it with free(), which aligned_alloc allows).
  if (auto* e = mirrormmu::sync::DetEngine::active(); e && e->current() >= 0) {
    e->quarantine(page);
    return;
  }
  std::free(page);
}
void* kshim_zalloc(size_t size) { return std::calloc(1, size); }
void kshim_free(void* p) { std::free(p); }

bool kshim_fail_alloc(int site) {
  const auto point = site == 1 ? mirrormmu::InjectPoint::SplitTable : mirrormmu::InjectPoint::CacheTopup;
  if (auto* fi = mirrormmu::oracle::g_injector.load(std::memory_order_relaxed))
    return fi->check(point, false) == mirrormmu::Injection::NoMem;
  if (auto o = mirrormmu::g_injection_oracle.load(std::memory_order_relaxed)) return o(point, false) == mirrormmu::Injection::NoMem;
  return false;
}

}  // extern "C"
