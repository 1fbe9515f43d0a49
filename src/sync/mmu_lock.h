// SPDX-License-Identifier: MIT
// kvm->mmu_lock: a reader/writer lock with lockdep-style holder tracking.
//
// "Shared" is read_lock (vCPU faults), "exclusive" is write_lock (zaps,
// conversions, teardown). Holder tracking is per thread, so an assertion
// checks what *this* thread holds, like lockdep_assert_held_write().
#pragma once

#include <atomic>
#include <shared_mutex>

#include "base/bug.h"
#include "sync/sched.h"

namespace mirrormmu::sync {

enum class LockMode : uint8_t { None, Read, Write };

class MmuLock {
 public:
  void write_lock();
  void write_unlock();
  void read_lock();
  void read_unlock();

  LockMode held_by_me() const;
  bool held_write() const { return held_by_me() == LockMode::Write; }
  bool held_read() const { return held_by_me() == LockMode::Read; }

  // rwlock_needbreak(): someone is waiting; long walks yield when true.
  bool contended() const;

  uint64_t write_acquisitions() const { return writes_.load(std::memory_order_relaxed); }
  uint64_t read_acquisitions() const;

 private:
  std::shared_mutex mu_;
  std::atomic<int> waiters_{0};
  // Under the deterministic engine the lock is this state, and waiting
  // means leaving the runnable set (only one virtual thread runs at a time,
  // so a real mutex would deadlock). Writers are preferred, as in qrwlock.
  int det_readers_ = 0;
  bool det_writer_ = false;
  int det_writers_waiting_ = 0;
  std::atomic<uint64_t> writes_{0};
  // Read acquisitions are counted in per-CPU-like shards: one shared counter
  // would bounce between vCPU threads on every fault.
  struct alignas(64) Shard {
    std::atomic<uint64_t> n{0};
  };
  static constexpr int kShards = 16;
  Shard reads_[kShards];
};

// lockdep_assert_held_write / _read / lockdep_assert_held.
inline void assert_held_write(const MmuLock& l, BugTracker& kvm) {
  warn_on_once(!l.held_write(), kvm, Site::lockdep_not_write);
}
inline void assert_held_read(const MmuLock& l, BugTracker& kvm) {
  warn_on_once(!l.held_read(), kvm, Site::lockdep_not_read);
}
inline void assert_held(const MmuLock& l, BugTracker& kvm) {
  warn_on_once(l.held_by_me() == LockMode::None, kvm, Site::lockdep_not_held);
}

class WriteGuard {
 public:
  explicit WriteGuard(MmuLock& l) : l_(l) { l_.write_lock(); }
  ~WriteGuard() { l_.write_unlock(); }
  WriteGuard(const WriteGuard&) = delete;
  WriteGuard& operator=(const WriteGuard&) = delete;

 private:
  MmuLock& l_;
};

class ReadGuard {
 public:
  explicit ReadGuard(MmuLock& l) : l_(l) { l_.read_lock(); }
  ~ReadGuard() { l_.read_unlock(); }
  ReadGuard(const ReadGuard&) = delete;
  ReadGuard& operator=(const ReadGuard&) = delete;

 private:
  MmuLock& l_;
};

}  // namespace mirrormmu::sync
