// SPDX-License-Identifier: MIT
#include "sync/br_lock.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "base/percpu_counter.h"
#include "base/sanitizers.h"

namespace mirrormmu::sync {

constinit thread_local detail::BrThread detail::tl_br;

namespace {
using detail::BrHold;
using detail::BrWay;
using detail::kMaxBrHolds;

// A free hold for `l`: the lowest, below `top` if one is.
BrHold& new_hold(const BrLock* l) {
  detail::BrThread& t = detail::tl_br;
  size_t i = 0;
  while (i < t.top && t.holds[i].lock != nullptr) i++;
  if (i == kMaxBrHolds) [[unlikely]] {
    std::fputs("BrLock: a thread holds more locks than it can track\n", stderr);
    std::abort();
  }
  if (i == t.top) t.top++;
  t.holds[i] = {};
  t.holds[i].lock = l;
  return t.holds[i];
}

void drop_hold(BrHold& h) {
  h = {};
  detail::BrThread& t = detail::tl_br;
  while (t.top != 0 && t.holds[t.top - 1].lock == nullptr) t.top--;
}

size_t hold_index(const BrHold& h) { return static_cast<size_t>(&h - detail::tl_br.holds.data()); }

// A thread's token for a biased lock: the address of its hold table, which
// no two live threads share. A thread born where a dead owner's table was
// inherits its bias, which is harmless: the dead one holds nothing.
const void* my_token() { return &detail::tl_br; }
using detail::kBiasRevoked;

// ---- asymmetric readers ------------------------------------------------------

// Registered once for the process, before the first asymmetric lock exists:
// a lock that finds it unavailable stays symmetric for its whole life.
bool membarrier_ready() {
#if defined(MIRRORMMU_TSAN)
  return false;
#else
  static const bool ok = syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  return ok;
#endif
}

void membarrier_all_cpus() {
  if (syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
    // Registered, so this cannot fail; going on without it would let a
    // writer in beside a reader.
    std::perror("BrLock: membarrier");
    std::abort();
  }
}

// A thread's reader slots, one per hold index, on a cache line of their own.
// Records are never freed, only handed to the next thread, so a writer can
// look at any of them at any time.
struct alignas(64) ReaderRecord {
  std::array<std::atomic<const BrLock*>, kMaxBrHolds> reading{};
  bool in_use = false;  // under g_records_mu
};
constexpr size_t kMaxReaderThreads = 1024;
ReaderRecord g_records[kMaxReaderThreads];
std::atomic<size_t> g_records_used{0};  // records [0, used) may be in use
std::mutex g_records_mu;

struct RecordOwner {
  ReaderRecord* rec = nullptr;
  ~RecordOwner() {
    if (rec == nullptr) return;
    std::lock_guard g(g_records_mu);
    rec->in_use = false;
    rec = nullptr;  // handed on: this thread must not write it again
    detail::tl_br.reading = nullptr;
  }
};
thread_local RecordOwner tl_record;

// Called on a thread's first asymmetric read; after it the read side finds
// the slots through tl_br.reading.
ReaderRecord& my_record() {
  if (tl_record.rec != nullptr) [[likely]]
    return *tl_record.rec;
  std::lock_guard g(g_records_mu);
  for (size_t i = 0; i < kMaxReaderThreads; i++) {
    if (g_records[i].in_use) continue;
    g_records[i].in_use = true;
    if (i >= g_records_used.load(std::memory_order_relaxed)) g_records_used.store(i + 1, std::memory_order_release);
    tl_record.rec = &g_records[i];
    detail::tl_br.reading = g_records[i].reading.data();
    return g_records[i];
  }
  std::fputs("BrLock: more threads read asymmetric locks at once than there are reader records\n", stderr);
  std::abort();
}

// Readers hold it for a fault, a walk or a SEAMCALL: yield first, then sleep
// a little so a reader descheduled on a busy machine can finish.
void back_off(int spins) {
  if (spins < 64) std::this_thread::yield();
  else std::this_thread::sleep_for(std::chrono::microseconds(20));
}

}  // namespace

void BrLock::not_held() {
  std::fputs("BrLock: unlocked by a thread that does not hold it\n", stderr);
  std::abort();
}

BrLock::BrLock(Readers r, Bias b)
    : asym_(r == Readers::Asymmetric && membarrier_ready()),
      biasable_(b == Bias::FirstThread && membarrier_ready()),
      asym_only_(asym_ && !biasable_),
      mask_(mirrormmu::detail::cpu_shards() - 1) {}

bool BrLock::biased() const {
  const void* b = bias_.load(std::memory_order_relaxed);
  return b != nullptr && b != kBiasRevoked;
}

bool BrLock::bias_enter() {
  if (!biasable_) return false;
  const void* me = my_token();
  const void* b = bias_.load(std::memory_order_relaxed);
  if (b != me) [[unlikely]] {
    if (b != nullptr) {
      if (b != kBiasRevoked) revoke_bias();
      return false;
    }
    // The first taker claims it; one that loses the claim revokes.
    if (!bias_.compare_exchange_strong(b, me, std::memory_order_acq_rel)) {
      if (b != kBiasRevoked) revoke_bias();
      return false;
    }
  }
  return owner_enter();
}

void BrLock::revoke_bias() {
  std::lock_guard g(revoke_mu_);
  if (bias_.load(std::memory_order_acquire) == kBiasRevoked) return;
  revoking_.store(true, std::memory_order_seq_cst);
  // After this the owner's mark is visible to the load below, or the owner
  // had not yet looked at revoking_ and will see it raised.
  if (flaw_ != Flaw::RevokerSkipsMembarrier) [[likely]]
    membarrier_all_cpus();
  for (int spins = 0; owner_in_.load(std::memory_order_acquire); spins++) back_off(spins);
  if (revoke_pause_us_ != 0) [[unlikely]]
    std::this_thread::sleep_for(std::chrono::microseconds(revoke_pause_us_));
  bias_.store(kBiasRevoked, std::memory_order_release);
}

void BrLock::wait_for_writer() {
  // Counted before the flag is looked at again (both sequentially
  // consistent): a writer that leaves after this either sees the count and
  // wakes us, or dropped the flag before our look, and we do not sleep.
  waiters_.fetch_add(1, std::memory_order_seq_cst);
  writer_.wait(true, std::memory_order_seq_cst);
  waiters_.fetch_sub(1, std::memory_order_relaxed);
}

unsigned BrLock::read_enter_contended(unsigned shard) {
  Shard& s = readers_[shard];
  for (;;) {
    if (flaw_ == Flaw::ReaderIgnoresWriter) [[unlikely]]
      return shard;
    s.active.fetch_sub(1, std::memory_order_release);
    wait_for_writer();
    s.active.fetch_add(1, std::memory_order_seq_cst);
    if (!writer_.load(std::memory_order_seq_cst)) [[likely]]
      return shard;
  }
}

void BrLock::read_enter_asym(size_t slot) {
  std::atomic<const BrLock*>& mine = my_record().reading[slot];
  for (;;) {
    mine.store(this, std::memory_order_relaxed);
    // No fence between the store and the load: the writer's membarrier is
    // the other half of it. Only the compiler must keep the order.
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (!writer_.load(std::memory_order_acquire)) [[likely]]
      return;
    if (flaw_ == Flaw::ReaderIgnoresWriter) [[unlikely]]
      return;
    mine.store(nullptr, std::memory_order_release);
    wait_for_writer();
  }
}

void BrLock::wait_for_asym_readers() {
  // After this every reader either has its mark visible to the loads below,
  // or had not yet loaded the flag and will see it raised.
  if (flaw_ != Flaw::WriterSkipsMembarrier) [[likely]]
    membarrier_all_cpus();
  bool waited = false;
  const size_t used = g_records_used.load(std::memory_order_acquire);
  for (size_t i = 0; i < used; i++)
    for (auto& r : g_records[i].reading)
      for (int spins = 0; r.load(std::memory_order_acquire) == this; spins++) {
        if (!waited) {
          waiters_.fetch_add(1, std::memory_order_relaxed);
          waited = true;
        }
        back_off(spins);
      }
  if (waited) waiters_.fetch_sub(1, std::memory_order_relaxed);
}

void BrLock::write_enter() {
  for (bool expected = false; !writer_.compare_exchange_weak(expected, true, std::memory_order_seq_cst);
       expected = false)
    if (expected) wait_for_writer();
  if (flaw_ == Flaw::WriterIgnoresReaders) [[unlikely]]
    return;
  if (asym_) {
    wait_for_asym_readers();
    return;
  }
  bool waited = false;
  for (unsigned i = 0; i <= mask_; i++) {
    for (int spins = 0; readers_[i].active.load(std::memory_order_seq_cst) != 0; spins++) {
      if (!waited) {
        waiters_.fetch_add(1, std::memory_order_relaxed);
        waited = true;
      }
      back_off(spins);
    }
  }
  if (waited) waiters_.fetch_sub(1, std::memory_order_relaxed);
}

void BrLock::write_exit() {
  writer_.store(false, std::memory_order_seq_cst);
  if (waiters_.load(std::memory_order_seq_cst) != 0) writer_.notify_all();
}

void BrLock::lock() {
  if (BrHold* h = my_hold()) {
    if (h->exclusive == 0) {
      std::fputs("BrLock: taken exclusively by a thread that holds it shared (a deadlock)\n", stderr);
      std::abort();
    }
    if (h->exclusive == UINT16_MAX) [[unlikely]] {
      std::fputs("BrLock: taken exclusively 65535 times over by one thread\n", stderr);
      std::abort();
    }
    h->exclusive++;
    return;
  }
  BrHold& h = new_hold(this);
  h.exclusive = 1;
  if (bias_enter()) {
    h.way = BrWay::WriterBiased;
    return;
  }
  h.way = BrWay::Writer;
  write_enter();
}

void BrLock::unlock() {
  BrHold& h = detail::tl_br.holds[held_index()];
  if (h.exclusive == 0) [[unlikely]] {
    std::fputs("BrLock: unlocked exclusively by a thread that holds it only shared\n", stderr);
    std::abort();
  }
  if (--h.exclusive != 0) return;
  if (h.way == BrWay::WriterBiased)
    bias_exit();
  else
    write_exit();
  h.way = BrWay::None;
  if (h.shared == 0) drop_hold(h);  // one count at a time, as in unlock_shared()
}

void BrLock::lock_shared_first() {
  // Inside its own hold a thread goes on without the shard: the writer it
  // might meet waits for this thread anyway, and backing off would deadlock.
  if (BrHold* h = my_hold()) {
    h->shared++;
    return;
  }
  BrHold& h = new_hold(this);
  h.shared = 1;
  if (bias_enter()) {
    h.way = BrWay::ReaderBiased;
  } else if (asym_) {
    read_enter_asym(hold_index(h));
    h.way = BrWay::ReaderSlot;
  } else {
    h.shard = static_cast<uint8_t>(read_enter());
    h.way = BrWay::ReaderShard;
  }
}

void BrLock::unlock_shared_last(size_t i) {
  // A writer that took it shared inside its hold (the way out is the
  // writer's), or a hold whose exclusive count went first: the readers' ways
  // out are unlock_shared()'s.
  BrHold& h = detail::tl_br.holds[i];
  if (h.exclusive == 0) drop_hold(h);
}

}  // namespace mirrormmu::sync
