// SPDX-License-Identifier: MIT
#include "sync/mmu_lock.h"

#include <array>

#include "sync/det_engine.h"
#include "sync/vthread_locals.h"

namespace mirrormmu::sync {

namespace {
// What a virtual thread of the deterministic engine holds (natively the
// big-reader lock knows what its thread holds). A virtual thread holds at
// most a handful of mmu_locks at once (one per VM it is working on); a tiny
// array beats a map.
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


uint64_t MmuLock::read_acquisitions() const { return reads_.sum(0); }

LockMode MmuLock::held_by_me_hooked() const {
  if (!DetEngine::active()) return native_held();
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
  return native_.contended();
}

void MmuLock::write_lock() {
  sched_point(PointKind::LockAcquire, this);
  if (DetEngine* e = DetEngine::active()) [[unlikely]] {
    det_writers_waiting_++;
    while (det_writer_ || det_readers_) e->block_on_lock(this, PointKind::LockAcquire);
    det_writers_waiting_--;
    det_writer_ = true;
    e->note(EngineEvent::LockWrite, this);
    note_acquired(this, LockMode::Write);
  } else {
    native_.lock();
  }
  writes_.fetch_add(1, std::memory_order_relaxed);
}

void MmuLock::write_unlock() {
  if (DetEngine* e = DetEngine::active()) [[unlikely]] {
    note_released(this);
    det_writer_ = false;
    e->note(EngineEvent::UnlockWrite, this);
    e->wake(this);
  } else {
    native_.unlock();
  }
  sched_point(PointKind::LockRelease, this);
}

void MmuLock::read_lock_hooked() {
  sched_point(PointKind::LockAcquireShared, this);
  if (DetEngine* e = DetEngine::active()) {
    while (det_writer_ || det_writers_waiting_) e->block_on_lock(this, PointKind::LockAcquireShared);
    det_readers_++;
    e->note(EngineEvent::LockRead, this);
    note_acquired(this, LockMode::Read);
  } else {
    native_.lock_shared();
  }
  if (count_reads_) reads_.add(0);
}

void MmuLock::read_unlock_hooked() {
  if (DetEngine* e = DetEngine::active()) {
    note_released(this);
    e->note(EngineEvent::UnlockRead, this);
    // The last reader out hands the lock to a waiting writer. With none
    // waiting nothing is woken and the step only added to the reader count:
    // a writer that comes later reads that count.
    if (--det_readers_ == 0 && e->has_waiters(this)) e->wake(this);
  } else {
    native_.unlock_shared();
  }
  sched_point(PointKind::LockRelease, this);
}

}  // namespace mirrormmu::sync
