// SPDX-License-Identifier: MIT
// mmu_lock on OS threads: the big-reader lock's exclusion, shown holding
// with the real lock and shown lost with each of its two classic bugs
// planted, so the stress below is known to be able to see a broken lock.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "base/percpu_counter.h"
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
      }
    });
  for (int w = 0; w < writes && !(stop_at_first && p.broken.load()); w++) {
    l.write_lock();
    p.writers.fetch_add(1);
    stay_inside(p, true);
    p.writers.fetch_sub(1);
    l.write_unlock();
  }
  p.stop.store(true);
  for (auto& t : readers) t.join();
  return p.broken.load();
}

TEST(MmuLock, ReadersAndWritersExcludeEachOther) {
  sync::MmuLock l;
  EXPECT_EQ(hammer(l, 3, 2000, false), 0u);
  EXPECT_EQ(l.write_acquisitions(), 2000u);
}

// Planted: a reader that enters without looking at the writer's flag walks
// in on a writer.
TEST(MmuLock, PlantedReaderThatIgnoresTheWriterIsCaught) {
  sync::MmuLock l;
  l.plant_flaw(Flaw::ReaderIgnoresWriter);
  EXPECT_GT(hammer(l, 3, 200000, true), 0u);
}

// Planted: a writer that raises its flag but does not wait for the readers
// already inside shares the lock with them.
TEST(MmuLock, PlantedWriterThatDoesNotDrainTheReadersIsCaught) {
  sync::MmuLock l;
  l.plant_flaw(Flaw::WriterIgnoresReaders);
  EXPECT_GT(hammer(l, 3, 200000, true), 0u);
}

// A reader inside that reads again while a writer waits must get in: the
// writer waits for it anyway, and backing off would deadlock both.
TEST(MmuLock, NestedReadWithAWriterWaitingDoesNotDeadlock) {
  sync::MmuLock l;
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

// The read acquisitions are counted per shard; the sum is every one of them
// whichever threads took them.
TEST(MmuLock, ReadAcquisitionsSumOverThreads) {
  sync::MmuLock l;
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
