// SPDX-License-Identifier: MIT
// The asymmetric big-reader lock as a store-buffering litmus test. A reader
// stores its mark and loads the writer's flag with no fence between; the
// writer raises the flag (a locked instruction) and loads the marks. On x86
// the reader's load may pass its own store still in the store buffer, and
// then both see nothing of the other: both get in. The writer's membarrier(2)
// is what forbids that outcome. The lock hammer of mmu_lock_test cannot see
// it: the window is a few nanoseconds at the very start of a hold, so here
// the two threads meet at a barrier every round and race straight for the
// lock, with a random skew so that some rounds line the two up.
//
// The tests run alone (RUN_SERIAL): the outcome needs both threads on a CPU
// at the same instant, which another test on the other core would prevent.
#include <gtest/gtest.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "sync/br_lock.h"

namespace mirrormmu::test {
namespace {

using Clock = std::chrono::steady_clock;

// A short wait that is not PAUSE: in a VM a PAUSE loop may exit to the
// hypervisor (pause-loop exiting), which deschedules the vCPU for far longer
// than the window this test is about.
// Each step is a load and a store of memory, a few cycles.
inline void spin(uint64_t n) {
  volatile uint64_t i = 0;
  while (i < n) {
    const uint64_t next = i + 1;
    i = next;
  }
}

int usable_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return CPU_COUNT(&set);
}

// Two threads meeting once a round: each arrival counts, and a round's
// threads go on once both of that round have arrived. A thread that has
// waited a while yields: on a loaded machine the other one may be waiting
// for this very CPU, and a pure spin then cost a time slice per round (a
// run under a parallel build took ten minutes for 4,000 rounds).
struct RoundBarrier {
  std::atomic<uint64_t> arrived{0};
  void wait(uint64_t round) {
    arrived.fetch_add(1);
    for (int i = 0; arrived.load(std::memory_order_acquire) < 2 * (round + 1); i++)
      if (i >= 4096) std::this_thread::yield();
  }
};

struct Outcome {
  uint64_t rounds = 0;
  uint64_t both_inside = 0;  // rounds in which reader and writer held the lock at once
};

// Who holds the lock. The hold is long next to the skew between the two
// entries, so two that got in together are seen together.
struct Inside {
  std::atomic<int> n{0};
  std::atomic<uint64_t> both{0};
  void hold() {
    if (n.fetch_add(1) == 1) both.fetch_add(1);
    spin(500);
    n.fetch_sub(1);
  }
};

// A random delay of up to 63 steps before going for the lock, so that some
// rounds line the two entries up.
void skew(uint64_t& x) {
  x ^= x << 13, x ^= x >> 7, x ^= x << 17;
  spin(x & 63);
}

// Up to `rounds` rounds, or `budget` of time; with `stop_at_first` the run
// ends at the first round that let both in.
Outcome race(sync::BrLock& l, uint64_t rounds, std::chrono::milliseconds budget, bool stop_at_first) {
  RoundBarrier barrier;
  Inside inside;
  // The round the run ends at. A flag would not do: the writer, a round
  // ahead, could raise it before the reader looked at it for the round
  // before, and the reader would leave one round early, leaving the writer
  // at the barrier for good.
  std::atomic<uint64_t> stop_at{UINT64_MAX};
  const auto deadline = Clock::now() + budget;

  std::thread reader([&] {
    uint64_t x = 0x9e3779b97f4a7c15ull;
    // The end is looked at only past the barrier: the writer names its
    // round and then arrives, and waits for this thread to arrive too.
    for (uint64_t r = 0;; r++) {
      barrier.wait(r);
      if (stop_at.load(std::memory_order_relaxed) == r) break;
      skew(x);
      l.lock_shared();
      inside.hold();
      l.unlock_shared();
    }
  });
  uint64_t x = 0xd1b54a32d192ed03ull;
  uint64_t r = 0;
  for (; r < rounds; r++) {
    const bool last = (stop_at_first && inside.both.load() != 0) || Clock::now() > deadline;
    if (last) stop_at.store(r);
    barrier.wait(r);
    if (last) break;
    skew(x);
    l.lock();
    inside.hold();
    l.unlock();
  }
  if (r == rounds) {
    stop_at.store(r);
    barrier.wait(r);
  }
  reader.join();
  return {r, inside.both.load()};
}

bool asymmetric_here(const sync::BrLock& l, std::string* why) {
  if (!l.asymmetric()) {
    *why = "the lock is symmetric here (TSan, or no membarrier(2))";
    return false;
  }
  if (usable_cpus() < 2) {
    *why = "one CPU: a store buffer is drained at every switch, so there is nothing to race";
    return false;
  }
  return true;
}

// A run that raced too few rounds within its budget (a machine busy with
// other work: the two threads seldom ran at once) showed nothing either
// way. It says so as a skip instead of failing on the machine's load.
void skip_if_too_few(const Outcome& o) {
  if (o.rounds < 500) GTEST_SKIP() << "only " << o.rounds << " rounds in the budget: the machine is too busy to race";
}

// With the writer's membarrier, no round lets both in.
TEST(BrLockLitmus, MembarrierKeepsTheReaderOut) {
  sync::BrLock l(sync::BrLock::Readers::Asymmetric);
  std::string why;
  if (!asymmetric_here(l, &why)) GTEST_SKIP() << why;
  const Outcome o = race(l, 4000, std::chrono::seconds(5), false);
  EXPECT_EQ(o.both_inside, 0u) << "of " << o.rounds << " rounds";
  std::printf("%llu rounds\n", static_cast<unsigned long long>(o.rounds));
  skip_if_too_few(o);
}

// Planted: without it, the reader's fence-free store and load let both in,
// within a few thousand rounds on an idle two-CPU machine.
TEST(BrLockLitmus, PlantedWriterWithoutMembarrierIsCaught) {
  sync::BrLock l(sync::BrLock::Readers::Asymmetric);
  std::string why;
  if (!asymmetric_here(l, &why)) GTEST_SKIP() << why;
  l.plant_flaw(sync::BrLock::Flaw::WriterSkipsMembarrier);
  const auto t0 = Clock::now();
  const Outcome o = race(l, UINT64_MAX, std::chrono::seconds(60), true);
  EXPECT_GT(o.both_inside, 0u) << "in " << o.rounds << " rounds";
  std::printf("caught after %llu rounds, %.3f s\n", static_cast<unsigned long long>(o.rounds),
              std::chrono::duration<double>(Clock::now() - t0).count());
}

// The symmetric reader's locked add is a full fence of its own: the same
// race never lets both in, with or without a membarrier.
TEST(BrLockLitmus, SymmetricReadersNeedNoMembarrier) {
  if (usable_cpus() < 2) GTEST_SKIP() << "one CPU";
  sync::BrLock l(sync::BrLock::Readers::Symmetric);
  l.plant_flaw(sync::BrLock::Flaw::WriterSkipsMembarrier);
  const Outcome o = race(l, 4000, std::chrono::seconds(5), false);
  EXPECT_EQ(o.both_inside, 0u) << "of " << o.rounds << " rounds";
  skip_if_too_few(o);
}

// The bias's revocation is the same store-buffering shape: the owner stores
// its flag and loads the revoker's, with no fence between; the revoker
// raises its flag, runs membarrier and loads the owner's. A bias is revoked
// once in a lock's life, so each round races on a fresh lock, which the
// owner has claimed (taken and dropped once) before the round starts.
Outcome race_revocation(bool skip_membarrier, uint64_t rounds, std::chrono::milliseconds budget,
                        bool stop_at_first) {
  RoundBarrier barrier;  // three arrivals a round: lock made, lock claimed, go
  Inside inside;
  std::atomic<uint64_t> stop_at{UINT64_MAX};
  std::atomic<sync::BrLock*> current{nullptr};
  const auto deadline = Clock::now() + budget;
  std::thread owner([&] {
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (uint64_t r = 0;; r++) {
      barrier.wait(3 * r);
      if (stop_at.load(std::memory_order_relaxed) == r) break;
      sync::BrLock* l = current.load();
      l->lock_shared();  // claims the bias
      l->unlock_shared();
      barrier.wait(3 * r + 1);
      barrier.wait(3 * r + 2);
      skew(x);
      l->lock_shared();
      inside.hold();
      l->unlock_shared();
    }
  });
  uint64_t x = 0xd1b54a32d192ed03ull;
  uint64_t r = 0;
  // A round's lock is freed only once the owner has arrived at the next
  // round's first barrier: until then it may still be dropping it.
  std::unique_ptr<sync::BrLock> l, done;
  for (; r < rounds; r++) {
    const bool last = (stop_at_first && inside.both.load() != 0) || Clock::now() > deadline;
    if (last) stop_at.store(r);
    if (!last) {
      done = std::move(l);
      l = std::make_unique<sync::BrLock>(sync::BrLock::Readers::Symmetric, sync::BrLock::Bias::FirstThread);
      if (skip_membarrier) l->plant_flaw(sync::BrLock::Flaw::RevokerSkipsMembarrier);
      current.store(l.get());
    }
    barrier.wait(3 * r);
    done.reset();
    if (last) break;
    barrier.wait(3 * r + 1);
    if (!l->biased()) {
      ADD_FAILURE() << "round " << r << ": the owner's first hold did not bias the lock";
      stop_at.store(r + 1);
    }
    barrier.wait(3 * r + 2);
    skew(x);
    l->lock();  // revokes
    inside.hold();
    l->unlock();
  }
  if (r == rounds) {
    stop_at.store(r);
    barrier.wait(3 * r);
  }
  owner.join();
  return {r, inside.both.load()};
}

bool bias_here(std::string* why) {
  sync::BrLock probe(sync::BrLock::Readers::Symmetric, sync::BrLock::Bias::FirstThread);
  probe.lock();
  probe.unlock();
  if (!probe.biased()) {
    *why = "locks are not biased here (TSan, or no membarrier(2))";
    return false;
  }
  if (usable_cpus() < 2) {
    *why = "one CPU: a store buffer is drained at every switch, so there is nothing to race";
    return false;
  }
  return true;
}

TEST(BrLockLitmus, RevokersMembarrierKeepsTheOwnerOut) {
  std::string why;
  if (!bias_here(&why)) GTEST_SKIP() << why;
  const Outcome o = race_revocation(false, 4000, std::chrono::seconds(5), false);
  EXPECT_EQ(o.both_inside, 0u) << "of " << o.rounds << " rounds";
  std::printf("%llu rounds\n", static_cast<unsigned long long>(o.rounds));
  skip_if_too_few(o);
}

// Planted: a revoker that reads the owner's flag without the membarrier
// misses an owner whose store is still in its store buffer.
TEST(BrLockLitmus, PlantedRevokerWithoutMembarrierIsCaught) {
  std::string why;
  if (!bias_here(&why)) GTEST_SKIP() << why;
  const auto t0 = Clock::now();
  const Outcome o = race_revocation(true, UINT64_MAX, std::chrono::seconds(60), true);
  EXPECT_GT(o.both_inside, 0u) << "in " << o.rounds << " rounds";
  std::printf("caught after %llu rounds, %.3f s\n", static_cast<unsigned long long>(o.rounds),
              std::chrono::duration<double>(Clock::now() - t0).count());
}

}  // namespace
}  // namespace mirrormmu::test
