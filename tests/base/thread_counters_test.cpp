// SPDX-License-Identifier: MIT
// Counters in per-thread blocks: exact sums with plain stores, as long as
// each block has one writer. More threads than CPUs, two owners used in turn
// from the same threads, and threads that are gone by the time of the sum.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "base/thread_counters.h"

namespace mirrormmu::test {
namespace {

TEST(ThreadCounters, SumsEveryThreadsAddsExactly) {
  ThreadCounters<3> c;
  std::vector<std::thread> ts;
  for (int t = 0; t < 20; t++)  // more threads than any machine's shards
    ts.emplace_back([&, t] {
      for (int i = 0; i < 10000; i++) c.add(static_cast<size_t>(t % 3));
      c.add(2, 5);
    });
  for (auto& t : ts) t.join();  // the sums read blocks of threads that are gone
  EXPECT_EQ(c.sum(0) + c.sum(1) + c.sum(2), 20u * 10000 + 20 * 5);
  EXPECT_EQ(c.sum(0), 7u * 10000);
  EXPECT_EQ(c.sum(1), 7u * 10000);
  EXPECT_EQ(c.sum(2), 6u * 10000 + 20 * 5);
}

// The same adds with every thread handed one block: counts go missing,
// which is what the exact sums above would see. Threads race only while
// they overlap (on one CPU: when one is preempted between its load and its
// store), so they start together, run for several time slices, and a round
// that happens to lose nothing is tried again.
TEST(ThreadCounters, PlantedSharedBlockLosesCounts) {
  constexpr uint64_t kAdds = 2000000, kThreads = 8;
  bool lost = false;
  for (int round = 0; round < 20 && !lost; round++) {
    ThreadCounters<1> c;
    c.plant_flaw(ThreadCounters<1>::Flaw::OneBlock);
    std::atomic<uint64_t> started{0};
    std::vector<std::thread> ts;
    for (uint64_t t = 0; t < kThreads; t++)
      ts.emplace_back([&] {
        c.add(0, 0);  // the block is found before the race starts
        started.fetch_add(1);
        while (started.load() < kThreads) std::this_thread::yield();
        for (uint64_t i = 0; i < kAdds; i++) c.add(0);
      });
    for (auto& t : ts) t.join();
    EXPECT_LE(c.sum(0), kAdds * kThreads);
    lost = c.sum(0) < kAdds * kThreads;
  }
  EXPECT_TRUE(lost) << "eight threads adding into one block never lost a count";
}

// A thread that bumps two owners in turn keeps their counts apart, and an
// owner made after another is gone never sees the old one's block.
TEST(ThreadCounters, OwnersUsedInTurnStayApart) {
  auto a = std::make_unique<ThreadCounters<1>>();
  ThreadCounters<1> b;
  std::thread t([&] {
    for (int i = 0; i < 100; i++) {
      a->add(0);
      b.add(0, 2);
    }
  });
  t.join();
  for (int i = 0; i < 10; i++) a->add(0);
  EXPECT_EQ(a->sum(0), 110u);
  EXPECT_EQ(b.sum(0), 200u);
  a.reset();
  auto c = std::make_unique<ThreadCounters<1>>();  // may reuse a's address
  c->add(0);
  EXPECT_EQ(c->sum(0), 1u);
}

// More owners bumped in turn than a thread's cache holds: each miss finds
// the thread's block again, never another owner's.
TEST(ThreadCounters, MoreOwnersThanTheCacheHolds) {
  std::vector<std::unique_ptr<ThreadCounters<1>>> owners;
  for (int i = 0; i < 7; i++) owners.push_back(std::make_unique<ThreadCounters<1>>());
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; t++)
    ts.emplace_back([&] {
      for (int round = 0; round < 1000; round++)
        for (size_t i = 0; i < owners.size(); i++) owners[i]->add(0, i + 1);
    });
  for (auto& t : ts) t.join();
  for (size_t i = 0; i < owners.size(); i++) EXPECT_EQ(owners[i]->sum(0), 3u * 1000 * (i + 1)) << "owner " << i;
}

// Summed while the adders run: never more than was added, and exact once
// they stop.
TEST(ThreadCounters, SumWhileAdding) {
  ThreadCounters<1> c;
  std::vector<std::thread> ts;
  for (int t = 0; t < 2; t++)
    ts.emplace_back([&] {
      for (int i = 0; i < 50000; i++) c.add(0);
    });
  uint64_t last = 0;
  for (int i = 0; i < 100; i++) {
    const uint64_t s = c.sum(0);
    EXPECT_GE(s, last);  // each block only grows
    EXPECT_LE(s, 100000u);
    last = s;
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(c.sum(0), 100000u);
}

}  // namespace
}  // namespace mirrormmu::test
