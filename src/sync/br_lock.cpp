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

}  // namespace

bool BrLock::held_exclusive_by_me() const {
  const Hold* h = find_hold(this);
  return h != nullptr && h->exclusive != 0;
}

BrLock::BrLock() : mask_(mirrormmu::detail::cpu_shards() - 1) {}

void BrLock::wait_for_writer() {
  // Counted before the flag is looked at again (both sequentially
  // consistent): a writer that leaves after this either sees the count and
  // wakes us, or dropped the flag before our look, and we do not sleep.
  waiters_.fetch_add(1, std::memory_order_seq_cst);
  writer_.wait(true, std::memory_order_seq_cst);
  waiters_.fetch_sub(1, std::memory_order_relaxed);
}

void BrLock::read_enter() {
  Shard& s = readers_[mirrormmu::detail::percpu_shard() & mask_];
  for (;;) {
    s.active.fetch_add(1, std::memory_order_seq_cst);
    if (!writer_.load(std::memory_order_seq_cst)) [[likely]]
      return;
    if (flaw_ == Flaw::ReaderIgnoresWriter) [[unlikely]]
      return;
    s.active.fetch_sub(1, std::memory_order_release);
    wait_for_writer();
  }
}

void BrLock::read_exit() {
  readers_[mirrormmu::detail::percpu_shard() & mask_].active.fetch_sub(1, std::memory_order_release);
}

void BrLock::write_enter() {
  for (bool expected = false; !writer_.compare_exchange_weak(expected, true, std::memory_order_seq_cst);
       expected = false)
    if (expected) wait_for_writer();
  if (flaw_ == Flaw::WriterIgnoresReaders) [[unlikely]]
    return;
  bool waited = false;
  for (unsigned i = 0; i <= mask_; i++) {
    for (int spins = 0; readers_[i].active.load(std::memory_order_seq_cst) != 0; spins++) {
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
  if (waiters_.load(std::memory_order_seq_cst) != 0) writer_.notify_all();
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
