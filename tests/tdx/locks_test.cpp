// SPDX-License-Identifier: MIT
// The module's try-only sharex locks: the primitive behind every BUSY status
// once calls stop being serialized by the module mutex. The sharded one is
// hammered from threads, and shown to lose exclusion with each of its two
// classic bugs planted, so the stress is known to be able to see one.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "tdx/module_impl.h"

namespace mirrormmu::tdx {
namespace {

template <class Lock>
void expect_sharex_semantics(Lock& l) {
  EXPECT_TRUE(l.try_lock(LockMode::Shared));
  EXPECT_TRUE(l.try_lock(LockMode::Shared));
  EXPECT_FALSE(l.try_lock(LockMode::Exclusive));
  l.unlock(LockMode::Shared);
  EXPECT_FALSE(l.try_lock(LockMode::Exclusive));
  l.unlock(LockMode::Shared);
  ASSERT_TRUE(l.try_lock(LockMode::Exclusive));
  EXPECT_FALSE(l.try_lock(LockMode::Shared));
  EXPECT_FALSE(l.try_lock(LockMode::Exclusive));
  l.unlock(LockMode::Exclusive);
  EXPECT_TRUE(l.try_lock(LockMode::Shared));
  l.unlock(LockMode::Shared);
}

// Shared holders coexist, the exclusive one excludes everyone, and a lock
// given back is free again: for both shapes.
TEST(TdxSharexLock, SharedAndExclusiveHolds) {
  SharexLock l;
  expect_sharex_semantics(l);
}

TEST(TdxShardedSharexLock, SameAnswersAsTheOneWord) {
  ShardedSharexLock l;
  expect_sharex_semantics(l);
}

// A shared hold taken on one thread and dropped on another (VP.ENTER's TDR
// hold, dropped by a TD exit elsewhere) leaves the lock free.
TEST(TdxShardedSharexLock, SharedHoldDroppedOnAnotherThread) {
  ShardedSharexLock l;
  std::thread([&] { ASSERT_TRUE(l.try_lock(LockMode::Shared)); }).join();
  EXPECT_FALSE(l.try_lock(LockMode::Exclusive));
  std::thread([&] { l.unlock(LockMode::Shared); }).join();
  EXPECT_TRUE(l.try_lock(LockMode::Exclusive));
}

struct SharexProbe {
  std::atomic<int> shared{0}, exclusive{0};
  std::atomic<uint64_t> broken{0}, shared_holds{0}, exclusive_holds{0};
  std::atomic<bool> stop{false};
};

void look_around(SharexProbe& p, bool exclusive) {
  for (int i = 0; i < 256; i++) {
    const bool alone = exclusive ? p.shared.load() == 0 && p.exclusive.load() == 1 : p.exclusive.load() == 0;
    if (!alone) p.broken.fetch_add(1);
    if (i % 64 == 63) std::this_thread::yield();
  }
}

// One try at the lock in `mode`: inside, it counts itself and looks around;
// then it leaves a break before the next try, or an exclusive try would
// never find three sharers all out at once (as a TRACK would not find the
// vCPUs out without KVM's kick), nor they the lock free of the exclusive one.
void try_once(ShardedSharexLock& l, LockMode mode, SharexProbe& p) {
  const bool ex = mode == LockMode::Exclusive;
  if (!l.try_lock(mode)) {
    std::this_thread::yield();
    return;
  }
  (ex ? p.exclusive : p.shared).fetch_add(1);
  (ex ? p.exclusive_holds : p.shared_holds).fetch_add(1);
  look_around(p, ex);
  (ex ? p.exclusive : p.shared).fetch_sub(1);
  l.unlock(mode);
  std::this_thread::sleep_for(std::chrono::microseconds(20));
}

// Three threads take the lock shared and one exclusively, each only when
// its try succeeds, until the exclusive side got in `holds` times (or at the
// first broken exclusion with `stop_at_first`).
uint64_t hammer(ShardedSharexLock& l, uint64_t holds, bool stop_at_first, SharexProbe& p) {
  std::vector<std::thread> sharers;
  for (int t = 0; t < 3; t++)
    sharers.emplace_back([&] {
      while (!p.stop.load()) try_once(l, LockMode::Shared, p);
    });
  while (p.exclusive_holds.load() < holds && !(stop_at_first && p.broken.load()))
    try_once(l, LockMode::Exclusive, p);
  p.stop.store(true);
  for (auto& t : sharers) t.join();
  return p.broken.load();
}

TEST(TdxShardedSharexLock, HoldersExcludeEachOtherUnderThreads) {
  ShardedSharexLock l;
  SharexProbe p;
  EXPECT_EQ(hammer(l, 2000, false, p), 0u);
  // The sharers got in too: a lock that refused them would pass the above.
  EXPECT_GT(p.shared_holds.load(), 0u);
  expect_sharex_semantics(l);  // and it is left free
}

TEST(TdxShardedSharexLock, PlantedSharedAttemptThatIgnoresTheExclusiveHolderIsCaught) {
  ShardedSharexLock l;
  l.plant_flaw(ShardedSharexLock::Flaw::SharedIgnoresExclusive);
  SharexProbe p;
  EXPECT_GT(hammer(l, 1000000, true, p), 0u);
}

TEST(TdxShardedSharexLock, PlantedExclusiveAttemptThatIgnoresTheSharedHoldersIsCaught) {
  ShardedSharexLock l;
  l.plant_flaw(ShardedSharexLock::Flaw::ExclusiveIgnoresShared);
  SharexProbe p;
  EXPECT_GT(hammer(l, 1000000, true, p), 0u);
}

TEST(TdxOpStates, Membership) {
  constexpr OpStates s{OpState::Initialized, OpState::Runnable};
  static_assert(s.has(OpState::Runnable));
  EXPECT_TRUE(s.has(OpState::Initialized));
  EXPECT_FALSE(s.has(OpState::Uninitialized));
  EXPECT_FALSE(kBuildOrRun.has(OpState::Uninitialized));
}

}  // namespace
}  // namespace mirrormmu::tdx
