// SPDX-License-Identifier: MIT
// mmu_lock on OS threads: the big-reader lock's exclusion, shown holding
// with the real lock and shown lost with each of its two classic bugs
// planted, so the stress below is known to be able to see a broken lock.
#include <gtest/gtest.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "base/percpu_counter.h"
#include "base/sanitizers.h"
#include "sync/mmu_lock.h"

namespace mirrormmu::test {
namespace {

using Flaw = sync::MmuLock::Flaw;

// Who is inside, as each side sees it, and how often the lock let a reader
// in beside a writer (or two writers in at once).
struct Probe {
  std::atomic<int> readers{0};
  std::atomic<int> writers{0};
  std::atomic<uint64_t> broken{0};
  std::atomic<bool> stop{false};
};

// A critical section long enough to be overlapped: it looks at the other
// side again and again, and gives the CPU away now and then so that even
// on one busy core the other threads run while it is inside.
void stay_inside(Probe& p, bool writer) {
  for (int i = 0; i < 512; i++) {
    const bool alone = writer ? p.readers.load() == 0 && p.writers.load() == 1 : p.writers.load() == 0;
    if (!alone) p.broken.fetch_add(1);
    if (i % 128 == 127) std::this_thread::yield();
  }
}

// `nreaders` threads read-lock in a loop while one thread write-locks
// `writes` times; with `stop_at_first` the run ends at the first broken
// exclusion. Returns how many were seen.
uint64_t hammer(sync::MmuLock& l, int nreaders, int writes, bool stop_at_first) {
  Probe p;
  std::vector<std::thread> readers;
  for (int r = 0; r < nreaders; r++)
    readers.emplace_back([&] {
      while (!p.stop.load()) {
        l.read_lock();
        p.readers.fetch_add(1);
        stay_inside(p, false);
        p.readers.fetch_sub(1);
        l.read_unlock();
        // Out for a moment: with three readers on two CPUs a writer that
        // waits for the readers to drain would otherwise wait a long time
        // (a reader that ignores the flag keeps them from ever draining).
        std::this_thread::yield();
      }
    });
  for (int w = 0; w < writes && !(stop_at_first && p.broken.load()); w++) {
    l.write_lock();
    p.writers.fetch_add(1);
    stay_inside(p, true);
    p.writers.fetch_sub(1);
    l.write_unlock();
    std::this_thread::yield();  // on one CPU: let the readers back in
  }
  p.stop.store(true);
  for (auto& t : readers) t.join();
  return p.broken.load();
}

// Both kinds of readers: the symmetric ones of the module's lock and the
// asymmetric ones of mmu_lock (plain stores, the writer's membarrier).
class MmuLockKinds : public ::testing::TestWithParam<sync::BrLock::Readers> {};
INSTANTIATE_TEST_SUITE_P(Readers, MmuLockKinds,
                         ::testing::Values(sync::BrLock::Readers::Symmetric, sync::BrLock::Readers::Asymmetric),
                         [](const auto& info) {
                           return info.param == sync::BrLock::Readers::Symmetric ? "Symmetric" : "Asymmetric";
                         });

TEST_P(MmuLockKinds, ReadersAndWritersExcludeEachOther) {
  sync::MmuLock l(GetParam());
  EXPECT_EQ(hammer(l, 3, 2000, false), 0u);
  EXPECT_EQ(l.write_acquisitions(), 2000u);
}

// Planted: a reader that enters without looking at the writer's flag walks
// in on a writer.
TEST_P(MmuLockKinds, PlantedReaderThatIgnoresTheWriterIsCaught) {
  sync::MmuLock l(GetParam());
  l.plant_flaw(Flaw::ReaderIgnoresWriter);
  EXPECT_GT(hammer(l, 3, 200000, true), 0u);
}

// Planted: a writer that raises its flag but does not wait for the readers
// already inside shares the lock with them.
TEST_P(MmuLockKinds, PlantedWriterThatDoesNotDrainTheReadersIsCaught) {
  sync::MmuLock l(GetParam());
  l.plant_flaw(Flaw::WriterIgnoresReaders);
  EXPECT_GT(hammer(l, 3, 200000, true), 0u);
}

// mmu_lock's readers are asymmetric wherever membarrier(2) is there, except
// under TSan, which cannot see the order a membarrier gives.
TEST(MmuLock, FaultPathReadersAreAsymmetric) {
  sync::MmuLock l;
#if defined(MIRRORMMU_TSAN)
  EXPECT_FALSE(l.asymmetric_readers());
#else
  if (syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) <= 0) GTEST_SKIP() << "no membarrier(2) here";
  EXPECT_TRUE(l.asymmetric_readers());
#endif
  EXPECT_FALSE(sync::MmuLock(sync::BrLock::Readers::Symmetric).asymmetric_readers());
}

// A reader inside that reads again while a writer waits must get in: the
// writer waits for it anyway, and backing off would deadlock both.
TEST_P(MmuLockKinds, NestedReadWithAWriterWaitingDoesNotDeadlock) {
  sync::MmuLock l(GetParam());
  std::atomic<int> stage{0};
  l.read_lock();
  std::thread writer([&] {
    stage.store(1);
    l.write_lock();
    stage.store(2);
    l.write_unlock();
  });
  while (stage.load() == 0 || !l.contended()) std::this_thread::yield();
  l.read_lock();
  EXPECT_TRUE(l.held_read());
  EXPECT_EQ(stage.load(), 1);  // the writer is still out
  l.read_unlock();
  l.read_unlock();
  writer.join();
  EXPECT_EQ(stage.load(), 2);
}

// The read acquisitions are counted per thread; the sum is every one of them
// whichever threads took them.
TEST_P(MmuLockKinds, ReadAcquisitionsSumOverThreads) {
  sync::MmuLock l(GetParam());
  std::vector<std::thread> ts;
  for (int t = 0; t < 20; t++)  // more threads than shards
    ts.emplace_back([&] {
      for (int i = 0; i < 500; i++) {
        sync::ReadGuard g(l);
        EXPECT_TRUE(l.held_read());
      }
      EXPECT_FALSE(l.held_read());
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(l.read_acquisitions(), 20u * 500u);
  EXPECT_FALSE(l.contended());
}

TEST(PercpuCounter, SumsWhatEveryThreadAddedAndTookAway) {
  PercpuCounter<int64_t> c;
  std::vector<std::thread> ts;
  for (int t = 0; t < 20; t++)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 1000; i++) c.fetch_add(t + 1, std::memory_order_relaxed);
      for (int i = 0; i < 1000; i++) c.fetch_sub(1, std::memory_order_relaxed);
    });
  for (auto& t : ts) t.join();
  // sum over t of 1000 * (t + 1) - 1000, for t < 20
  EXPECT_EQ(c.load(), 1000 * (20 * 21 / 2) - 20 * 1000);
}

}  // namespace
}  // namespace mirrormmu::test
