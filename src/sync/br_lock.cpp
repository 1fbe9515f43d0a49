// SPDX-License-Identifier: MIT
#include "sync/br_lock.h"

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "base/percpu_counter.h"

namespace mirrormmu::sync {

namespace {
// What this thread holds of which lock. A thread holds a few at once (a VM's
// mmu_lock and memslot lock, the module's lock; two VMs in a test): a small
// array beats a map.
struct Hold {
  const BrLock* lock = nullptr;
  uint32_t shared = 0;
  uint32_t exclusive = 0;
  bool in_shard = false;  // the outermost hold is a reader's, counted in a shard
};
constexpr size_t kMaxHolds = 8;
thread_local std::array<Hold, kMaxHolds> tl_holds;

Hold* find_hold(const BrLock* l) {
  for (Hold& h : tl_holds)
    if (h.lock == l) return &h;
  return nullptr;
}

Hold& new_hold(const BrLock* l) {
  for (Hold& h : tl_holds)
    if (h.lock == nullptr) {
      h.lock = l;
      return h;
    }
  std::fputs("BrLock: a thread holds more locks than it can track\n", stderr);
  std::abort();
}

void drop_if_unused(Hold& h) {
  if (h.shared == 0 && h.exclusive == 0) h = {};
}

unsigned my_shard(unsigned n) { return mirrormmu::detail::percpu_shard() % n; }
}  // namespace

bool BrLock::held_exclusive_by_me() const {
  const Hold* h = find_hold(this);
  return h != nullptr && h->exclusive != 0;
}

void BrLock::read_enter() {
  Shard& s = readers_[my_shard(kShards)];
  s.active.fetch_add(1, std::memory_order_seq_cst);
  if (!writer_.load(std::memory_order_seq_cst)) [[likely]]
    return;
  if (flaw_ == Flaw::ReaderIgnoresWriter) [[unlikely]]
    return;
  s.active.fetch_sub(1, std::memory_order_release);
  // Counted as a waiter only when the lock is not free at once: a shared
  // counter touched on every acquisition would itself be the bottleneck.
  waiters_.fetch_add(1, std::memory_order_relaxed);
  // Holding mu_ shared, no writer is in or between raising writer_ and
  // scanning the shards: entering now is safe, and the next writer sees us.
  mu_.lock_shared();
  s.active.fetch_add(1, std::memory_order_seq_cst);
  mu_.unlock_shared();
  waiters_.fetch_sub(1, std::memory_order_relaxed);
}

void BrLock::read_exit() { readers_[my_shard(kShards)].active.fetch_sub(1, std::memory_order_release); }

void BrLock::write_enter() {
  bool waited = false;
  if (!mu_.try_lock()) {
    waiters_.fetch_add(1, std::memory_order_relaxed);
    waited = true;
    mu_.lock();
  }
  writer_.store(true, std::memory_order_seq_cst);
  if (flaw_ == Flaw::WriterIgnoresReaders) [[unlikely]] {
    if (waited) waiters_.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  for (const Shard& s : readers_) {
    for (int spins = 0; s.active.load(std::memory_order_seq_cst) != 0; spins++) {
      if (!waited) {
        waiters_.fetch_add(1, std::memory_order_relaxed);
        waited = true;
      }
      // Readers hold it for a fault, a walk or a SEAMCALL: yield first, then
      // sleep a little so a reader descheduled on a busy machine can finish.
      if (spins < 64) std::this_thread::yield();
      else std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }
  if (waited) waiters_.fetch_sub(1, std::memory_order_relaxed);
}

void BrLock::write_exit() {
  writer_.store(false, std::memory_order_seq_cst);
  mu_.unlock();
}

void BrLock::lock() {
  Hold* h = find_hold(this);
  if (h != nullptr) {
    if (h->exclusive == 0) {
      std::fputs("BrLock: taken exclusively by a thread that holds it shared (a deadlock)\n", stderr);
      std::abort();
    }
    h->exclusive++;
    return;
  }
  write_enter();
  new_hold(this).exclusive = 1;
}

void BrLock::unlock() {
  Hold* h = find_hold(this);
  if (--h->exclusive == 0) write_exit();
  drop_if_unused(*h);
}

void BrLock::lock_shared() {
  // Inside its own hold a thread goes on without the shard: the writer it
  // might meet waits for this thread anyway, and backing off would deadlock.
  if (Hold* h = find_hold(this)) {
    h->shared++;
    return;
  }
  read_enter();
  Hold& h = new_hold(this);
  h.shared = 1;
  h.in_shard = true;
}

void BrLock::unlock_shared() {
  Hold* h = find_hold(this);
  if (--h->shared == 0 && h->in_shard) {
    h->in_shard = false;
    read_exit();
  }
  drop_if_unused(*h);
}

}  // namespace mirrormmu::sync
