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

  // The two classic bugs of a big-reader lock, planted only by the test
  // that shows it catches them (tests/sync/mmu_lock_test.cpp): a reader
  // that enters without looking at the writer's flag, and a writer that
  // raises the flag but does not wait for the readers inside. Both are
  // tested off the readers' fast path, so the hook costs nothing there.
  enum class Flaw : uint8_t { None, ReaderIgnoresWriter, WriterIgnoresReaders };
  void plant_flaw(Flaw f) { flaw_ = f; }

 private:
  // Natively a big-reader lock: a reader marks itself in its own shard and
  // checks for a writer, so readers on different CPUs share no cache line
  // (the per-CPU counters of SRCU, which the memslot lock models; for
  // mmu_lock it keeps the model's lock from being what the fault path
  // measures). A writer takes mu_, raises writer_, and waits for the shards
  // to drain; a reader that meets writer_ backs off and waits on mu_.
  void read_lock_native();
  void write_lock_native();
  std::shared_mutex mu_;
  std::atomic<bool> writer_{false};
  Flaw flaw_ = Flaw::None;
  std::atomic<int> waiters_{0};
  // Under the deterministic engine the lock is this state, and waiting
  // means leaving the runnable set (only one virtual thread runs at a time,
  // so a real mutex would deadlock). Writers are preferred, as in qrwlock.
  int det_readers_ = 0;
  bool det_writer_ = false;
  int det_writers_waiting_ = 0;
  std::atomic<uint64_t> writes_{0};
  // Per-CPU-like shards: the readers inside, and read acquisitions counted.
  struct alignas(64) Shard {
    std::atomic<int64_t> active{0};
    std::atomic<uint64_t> n{0};
  };
  static constexpr unsigned kShards = 16;
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
