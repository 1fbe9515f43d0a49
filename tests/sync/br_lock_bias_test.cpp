// SPDX-License-Identifier: MIT
// A BrLock biased to its first thread: that thread's holds skip the lock's
// shared state, the first other thread revokes the bias, and exclusion holds
// across the revocation. The race of the revocation itself (the owner's
// store against the revoker's membarrier) is the litmus test's
// (tests/litmus/br_lock_litmus_test.cpp), with its bug planted.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "sync/br_lock.h"

namespace mirrormmu::test {
namespace {

using sync::BrLock;

bool bias_here() {
  BrLock probe(BrLock::Readers::Symmetric, BrLock::Bias::FirstThread);
  probe.lock_shared();
  probe.unlock_shared();
  return probe.biased();
}

TEST(BrLockBias, TheFirstTakerOwnsItUntilAnotherThreadComes) {
  if (!bias_here()) GTEST_SKIP() << "locks are not biased here (TSan, or no membarrier(2))";
  BrLock l(BrLock::Readers::Symmetric, BrLock::Bias::FirstThread);
  EXPECT_FALSE(l.biased()) << "nobody has taken it yet";
  l.lock_shared();
  EXPECT_TRUE(l.biased());
  EXPECT_TRUE(l.held_alone_by_me()) << "the owner's shared hold keeps everyone else out";
  EXPECT_FALSE(l.held_exclusive_by_me());
  l.unlock_shared();
  l.lock();
  EXPECT_TRUE(l.held_exclusive_by_me());
  l.unlock();
  EXPECT_TRUE(l.biased()) << "the owner's own holds do not revoke it";
  std::thread other([&] {
    l.lock_shared();
    EXPECT_FALSE(l.held_alone_by_me()) << "an ordinary shared hold may have company";
    l.unlock_shared();
  });
  other.join();
  EXPECT_FALSE(l.biased()) << "another thread's hold revoked it";
  // The owner goes on the ordinary way.
  l.lock_shared();
  EXPECT_FALSE(l.held_alone_by_me());
  l.unlock_shared();
  l.lock();
  EXPECT_TRUE(l.held_alone_by_me());
  l.unlock();
}

TEST(BrLockBias, UnbiasedLocksStayUnbiased) {
  BrLock l;
  l.lock_shared();
  EXPECT_FALSE(l.biased());
  EXPECT_FALSE(l.held_alone_by_me());
  l.unlock_shared();
}

// The owner keeps taking it, shared and exclusively, nested too, while other
// threads come one after another and take it exclusively: every increment
// of a plain counter under an exclusive hold is kept, and no shared holder
// ever sees a writer inside.
TEST(BrLockBias, ExclusionHoldsAcrossTheRevocation) {
  BrLock l(BrLock::Readers::Symmetric, BrLock::Bias::FirstThread);
  uint64_t counter = 0;  // plain: only the lock orders it
  std::atomic<int> writers_inside{0};
  std::atomic<uint64_t> broken{0};
  std::atomic<bool> others_go{false};
  std::atomic<int> others_done{0};
  constexpr int kOthers = 2, kOtherWrites = 20000;
  std::vector<std::thread> others;
  for (int t = 0; t < kOthers; t++)
    others.emplace_back([&] {
      while (!others_go.load()) std::this_thread::yield();
      for (int i = 0; i < kOtherWrites; i++) {
        l.lock();
        if (writers_inside.fetch_add(1) != 0) broken.fetch_add(1);
        counter++;
        writers_inside.fetch_sub(1);
        l.unlock();
      }
      others_done.fetch_add(1);
    });
  uint64_t owner_writes = 0;
  for (uint64_t i = 0; others_done.load() < kOthers; i++) {
    if (i == 1000) others_go.store(true);  // the owner has held it alone for a while
    if (i % 3 == 0) {
      l.lock();
      if (writers_inside.fetch_add(1) != 0) broken.fetch_add(1);
      counter++;
      owner_writes++;
      l.lock_shared();  // nested
      l.unlock_shared();
      writers_inside.fetch_sub(1);
      l.unlock();
    } else {
      l.lock_shared();
      if (writers_inside.load() != 0) broken.fetch_add(1);
      l.unlock_shared();
    }
  }
  for (auto& t : others) t.join();
  EXPECT_EQ(broken.load(), 0u);
  l.lock();
  EXPECT_EQ(counter, owner_writes + kOthers * kOtherWrites);
  l.unlock();
  EXPECT_FALSE(l.biased());
}

// The owner comes for a shared hold while a revoker, having seen it out, has
// not yet revoked (the window held open by the test hook). It must step back
// and come in the ordinary way, where the revoker's exclusive hold then
// waits for it. True if the writer was ever inside beside the owner.
bool writer_beside_owner_during_revocation(BrLock::Flaw flaw) {
  using namespace std::chrono_literals;
  BrLock l(BrLock::Readers::Symmetric, BrLock::Bias::FirstThread);
  l.plant_flaw(flaw);
  l.widen_revocation_for_test(100'000);
  l.lock_shared();  // claims the bias
  l.unlock_shared();
  std::atomic<bool> writer_inside{false};
  std::thread revoker([&] {
    l.lock();  // revokes, dawdling 100 ms after it has seen the owner out
    writer_inside.store(true);
    std::this_thread::sleep_for(20ms);
    writer_inside.store(false);
    l.unlock();
  });
  std::this_thread::sleep_for(30ms);  // the revoker is in its window now
  bool beside = false;
  l.lock_shared();
  for (int i = 0; i < 200 && !beside; i++) {  // held past the window's end
    beside = writer_inside.load();
    std::this_thread::sleep_for(1ms);
  }
  l.unlock_shared();
  revoker.join();
  return beside;
}

TEST(BrLockBias, AnOwnerArrivingDuringARevocationWaitsForTheWriter) {
  if (!bias_here()) GTEST_SKIP() << "locks are not biased here (TSan, or no membarrier(2))";
  EXPECT_FALSE(writer_beside_owner_during_revocation(BrLock::Flaw::None));
}

// Planted: an owner that comes in by the bias without looking for a revoker.
TEST(BrLockBias, PlantedOwnerIgnoringTheRevokerIsCaught) {
  if (!bias_here()) GTEST_SKIP() << "locks are not biased here (TSan, or no membarrier(2))";
  EXPECT_TRUE(writer_beside_owner_during_revocation(BrLock::Flaw::OwnerIgnoresRevoker));
}

}  // namespace
}  // namespace mirrormmu::test
