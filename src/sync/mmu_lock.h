// SPDX-License-Identifier: MIT
// kvm->mmu_lock: a reader/writer lock with lockdep-style holder tracking.
//
// "Shared" is read_lock (vCPU faults), "exclusive" is write_lock (zaps,
// conversions, teardown). Holder tracking is per thread, so an assertion
// checks what *this* thread holds, like lockdep_assert_held_write().
#pragma once

#include <atomic>

#include "base/bug.h"
#include "base/thread_counters.h"
#include "sync/br_lock.h"
#include "sync/sched.h"

namespace mirrormmu::sync {

enum class LockMode : uint8_t { None, Read, Write };

class MmuLock {
 public:
  // Asymmetric readers (see BrLock): read on every fault, written rarely.
  // Tests build the symmetric kind too, to hammer both.
  // The memslot lock's read acquisitions are not reported anywhere: it
  // skips counting them, one thread-local lookup less per fault.
  enum class ReadCount : uint8_t { Kept, Skipped };
  explicit MmuLock(BrLock::Readers r = BrLock::Readers::Asymmetric, ReadCount c = ReadCount::Kept)
      : native_(r), count_reads_(c == ReadCount::Kept) {}

  void write_lock();
  void write_unlock();
  // A fault takes two of these (the memslot lock and mmu_lock) and drops
  // them: with no scheduler hooked in, that is the big-reader lock's own
  // read side and a count, inline. The engine's bookkeeping and the
  // scheduling points live out of line.
  [[gnu::always_inline]] void read_lock() {
    if (sched_steered()) [[unlikely]]
      return read_lock_hooked();
    native_.lock_shared();
    if (count_reads_) reads_.add(0);
  }
  [[gnu::always_inline]] void read_unlock() {
    if (sched_steered()) [[unlikely]]
      return read_unlock_hooked();
    native_.unlock_shared();
  }

  LockMode held_by_me() const {
    if (sched_steered()) [[unlikely]]
      return held_by_me_hooked();
    return native_held();
  }
  bool held_write() const { return held_by_me() == LockMode::Write; }
  bool held_read() const { return held_by_me() == LockMode::Read; }

  // rwlock_needbreak(): someone is waiting; long walks yield when true.
  bool contended() const;

  uint64_t write_acquisitions() const { return writes_.load(std::memory_order_relaxed); }
  uint64_t read_acquisitions() const;

  // Plants one of the native lock's classic bugs (see BrLock).
  using Flaw = BrLock::Flaw;
  void plant_flaw(Flaw f) { native_.plant_flaw(f); }
  bool asymmetric_readers() const { return native_.asymmetric(); }

 private:
  void read_lock_hooked();
  void read_unlock_hooked();
  LockMode held_by_me_hooked() const;
  LockMode native_held() const {
    switch (native_.held_by_me()) {
      case BrLock::Held::Shared: return LockMode::Read;
      case BrLock::Held::Exclusive: return LockMode::Write;
      case BrLock::Held::None: break;
    }
    return LockMode::None;
  }

  // Natively a big-reader lock (BrLock): readers on different CPUs share no
  // cache line, as with the per-CPU counters of SRCU, which the memslot lock
  // models; for mmu_lock it keeps the model's lock from being what the
  // fault path measures.
  BrLock native_;
  // Under the deterministic engine the lock is this state, and waiting
  // means leaving the runnable set (only one virtual thread runs at a time,
  // so a real mutex would deadlock). Writers are preferred, as in qrwlock.
  int det_readers_ = 0;
  bool det_writer_ = false;
  int det_writers_waiting_ = 0;
  std::atomic<uint64_t> writes_{0};
  const bool count_reads_;
  // Bumped on every fault: a per-thread block, no locked add.
  ThreadCounters<1> reads_;
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
