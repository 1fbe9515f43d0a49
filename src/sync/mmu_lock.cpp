// SPDX-License-Identifier: MIT
#include "sync/mmu_lock.h"

#include <array>
#include <chrono>
#include <thread>

#include "base/percpu_counter.h"
#include "sync/det_engine.h"
#include "sync/vthread_locals.h"

namespace mirrormmu::sync {

namespace {
// A thread holds at most a handful of mmu_locks at once (one per VM it is
// working on); a tiny array beats a map.
struct Held {
  const MmuLock* lock = nullptr;
  LockMode mode = LockMode::None;
};
thread_local std::array<Held, 4> tl_held;
const std::array<Held, 4> kNoneHeld{};
[[maybe_unused]] const int g_held_local =
    register_vthread_local(+[]() -> void* { return &tl_held; }, &kNoneHeld, sizeof tl_held);

void note_acquired(const MmuLock* l, LockMode m) {
  for (auto& h : tl_held) {
    if (h.lock == nullptr) {
      h = {l, m};
      return;
    }
  }
}
void note_released(const MmuLock* l) {
  for (auto& h : tl_held) {
    if (h.lock == l) {
      h = {};
      return;
    }
  }
}
}  // namespace


uint64_t MmuLock::read_acquisitions() const {
  uint64_t n = 0;
  for (const auto& s : reads_) n += s.n.load(std::memory_order_relaxed);
  return n;
}

LockMode MmuLock::held_by_me() const {
  for (const auto& h : tl_held)
    if (h.lock == this) return h.mode;
  return LockMode::None;
}

bool MmuLock::contended() const {
  if (DetEngine* e = DetEngine::active()) [[unlikely]] {
    // Whether someone waits: read, ordered against blocking and waking.
    e->touch_read(DetEngine::waiters_of(this));
    return e->has_waiters(this);
  }
  return waiters_.load(std::memory_order_relaxed) != 0;
}

void MmuLock::read_lock_native() {
  Shard& s = reads_[mirrormmu::detail::percpu_shard() % kShards];
  // Dekker with the writer: both store, then load the other's flag, all
  // sequentially consistent, so at least one of them sees the other.
  s.active.fetch_add(1, std::memory_order_seq_cst);
  if (!writer_.load(std::memory_order_seq_cst)) [[likely]]
    return;
  if (flaw_ == Flaw::ReaderIgnoresWriter) [[unlikely]]
    return;
  // A reader already inside (a nested read on this thread) keeps going: the
  // writer waits for it anyway, and backing off would deadlock.
  if (held_by_me() == LockMode::Read) return;
  s.active.fetch_sub(1, std::memory_order_release);
  // Count as a waiter only when the lock is not free at once: a shared
  // counter touched on every acquisition would itself be the bottleneck.
  waiters_.fetch_add(1, std::memory_order_relaxed);
  // Holding mu_ shared, no writer is in or between raising writer_ and
  // scanning the shards: entering now is safe, and the next writer sees us.
  mu_.lock_shared();
  s.active.fetch_add(1, std::memory_order_seq_cst);
  mu_.unlock_shared();
  waiters_.fetch_sub(1, std::memory_order_relaxed);
}

void MmuLock::write_lock_native() {
  bool waited = false;
  if (!mu_.try_lock()) {
    waiters_.fetch_add(1, std::memory_order_relaxed);
    waited = true;
    mu_.lock();
  }
  writer_.store(true, std::memory_order_seq_cst);
  if (flaw_ == Flaw::WriterIgnoresReaders) [[unlikely]]
    return;
  for (const Shard& s : reads_) {
    for (int spins = 0; s.active.load(std::memory_order_seq_cst) != 0; spins++) {
      if (!waited) {
        waiters_.fetch_add(1, std::memory_order_relaxed);
        waited = true;
      }
      // Readers hold it for a fault or a walk: yield first, then sleep a
      // little so a reader descheduled on a busy machine can finish.
      if (spins < 64) std::this_thread::yield();
      else std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }
  if (waited) waiters_.fetch_sub(1, std::memory_order_relaxed);
}

void MmuLock::write_lock() {
  sched_point(PointKind::LockAcquire, this);
  if (DetEngine* e = DetEngine::active()) [[unlikely]] {
    det_writers_waiting_++;
    while (det_writer_ || det_readers_) e->block_on_lock(this, PointKind::LockAcquire);
    det_writers_waiting_--;
    det_writer_ = true;
    e->note(EngineEvent::LockWrite, this);
  } else {
    write_lock_native();
  }
  writes_.fetch_add(1, std::memory_order_relaxed);
  note_acquired(this, LockMode::Write);
}

void MmuLock::write_unlock() {
  note_released(this);
  if (DetEngine* e = DetEngine::active()) [[unlikely]] {
    det_writer_ = false;
    e->note(EngineEvent::UnlockWrite, this);
    e->wake(this);
  } else {
    writer_.store(false, std::memory_order_seq_cst);
    mu_.unlock();
  }
  sched_point(PointKind::LockRelease, this);
}

void MmuLock::read_lock() {
  sched_point(PointKind::LockAcquireShared, this);
  if (DetEngine* e = DetEngine::active()) [[unlikely]] {
    while (det_writer_ || det_writers_waiting_) e->block_on_lock(this, PointKind::LockAcquireShared);
    det_readers_++;
    e->note(EngineEvent::LockRead, this);
  } else {
    read_lock_native();
  }
  reads_[mirrormmu::detail::percpu_shard() % kShards].n.fetch_add(1, std::memory_order_relaxed);
  note_acquired(this, LockMode::Read);
}

void MmuLock::read_unlock() {
  note_released(this);
  if (DetEngine* e = DetEngine::active()) [[unlikely]] {
    e->note(EngineEvent::UnlockRead, this);
    // The last reader out hands the lock to a waiting writer. With none
    // waiting nothing is woken and the step only added to the reader count:
    // a writer that comes later reads that count.
    if (--det_readers_ == 0 && e->has_waiters(this)) e->wake(this);
  } else {
    reads_[mirrormmu::detail::percpu_shard() % kShards].active.fetch_sub(1, std::memory_order_release);
  }
  sched_point(PointKind::LockRelease, this);
}

}  // namespace mirrormmu::sync
