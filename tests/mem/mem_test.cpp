// SPDX-License-Identifier: MIT
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <vector>

#include "mem/backing.h"
#include "mem/memory_cache.h"
#include "mem/pfn_pool.h"

namespace mirrormmu::test {
namespace {

TEST(PfnPool, AllocatesFreesAndCountsOwners) {
  PfnPool pool(4096);
  const Pfn a = pool.alloc(PageOwner::PageTable, true);
  const Pfn b = pool.alloc(PageOwner::GuestPrivate);
  ASSERT_TRUE(a.valid() && b.valid());
  EXPECT_NE(a, b);
  EXPECT_NE(pool.page_ptr(a), nullptr);
  EXPECT_EQ(pool.page_ptr(b), nullptr);  // only page tables have memory
  EXPECT_EQ(pool.count(PageOwner::PageTable), 1u);
  EXPECT_EQ(pool.in_use(), 2u);
  EXPECT_TRUE(pool.free(a, PageOwner::PageTable));
  EXPECT_TRUE(pool.free(b, PageOwner::GuestPrivate));
  EXPECT_EQ(pool.in_use(), 0u);
  EXPECT_EQ(pool.violations(), 0u);
}

TEST(PfnPool, DoubleFreeAndWrongOwnerAreViolationsNotCrashes) {
  PfnPool pool(4096);
  const Pfn a = pool.alloc(PageOwner::SeptPage);
  EXPECT_FALSE(pool.free(a, PageOwner::PageTable));  // wrong owner: not freed
  EXPECT_EQ(pool.owner(a), PageOwner::SeptPage);
  EXPECT_TRUE(pool.free(a, PageOwner::SeptPage));
  EXPECT_FALSE(pool.free(a, PageOwner::SeptPage));  // double free
  EXPECT_FALSE(pool.free(Pfn{1u << 30}, PageOwner::SeptPage));
  EXPECT_EQ(pool.violations(), 3u);
  const auto log = pool.violation_log();
  ASSERT_EQ(log.size(), 3u);
  EXPECT_NE(log[1].find("double free"), std::string::npos);
}

TEST(PfnPool, RunsAre2MAlignedAndExhaustionIsReported) {
  PfnPool pool(2048);  // four 2M chunks
  const Pfn single = pool.alloc(PageOwner::GuestShared);
  int runs = 0;
  for (Pfn r; (r = pool.alloc_run_2m(PageOwner::GuestPrivate)).valid(); runs++) EXPECT_EQ(r.v % 512, 0u);
  // The chunk holding the single page can't be a run.
  EXPECT_EQ(runs, 3);
  EXPECT_EQ(pool.count(PageOwner::GuestPrivate), 3u * 512);
  uint64_t singles = 0;
  while (pool.alloc(PageOwner::GuestShared).valid()) singles++;
  EXPECT_EQ(singles, 511u);
  EXPECT_EQ(pool.count(PageOwner::Free), 0u);
  EXPECT_TRUE(pool.free(single, PageOwner::GuestShared));
}

// The pool finds a chunk's free frame from a hint (the lowest frame that may
// be free) rather than rescanning the chunk. Its classic bug is a hint not
// lowered when a frame below it is freed: the chunk then looks full while it
// has room. Here the pool is one full chunk, so a lost frame is an
// allocation failure.
TEST(PfnPool, FramesFreedBelowTheHintAreFoundAgain) {
  PfnPool pool(512);
  for (int i = 0; i < 512; i++) ASSERT_TRUE(pool.alloc(PageOwner::GuestShared).valid());
  EXPECT_FALSE(pool.alloc(PageOwner::GuestShared).valid());
  EXPECT_TRUE(pool.free(Pfn{300}, PageOwner::GuestShared));
  EXPECT_TRUE(pool.free(Pfn{7}, PageOwner::GuestShared));
  EXPECT_EQ(pool.alloc(PageOwner::GuestShared), Pfn{7});
  EXPECT_EQ(pool.alloc(PageOwner::GuestShared), Pfn{300});
  EXPECT_FALSE(pool.alloc(PageOwner::GuestShared).valid());
  EXPECT_TRUE(pool.free(Pfn{0}, PageOwner::GuestShared));
  EXPECT_EQ(pool.alloc(PageOwner::PageTable, true), Pfn{0});
  EXPECT_EQ(pool.count(PageOwner::Free), 0u);
  EXPECT_EQ(pool.violations(), 0u);
}

TEST(PfnPool, FailAfterInjectsExhaustion) {
  PfnPool pool(4096);
  pool.fail_after(2);
  EXPECT_TRUE(pool.alloc(PageOwner::PageTable).valid());
  EXPECT_TRUE(pool.alloc(PageOwner::PageTable).valid());
  EXPECT_FALSE(pool.alloc(PageOwner::PageTable).valid());
  EXPECT_EQ(pool.failed_allocs(), 1u);
}

// Slot arrays are handed from one pool to the next of its size (an explored
// execution builds and drops one): the next pool must find every frame
// without memory and without page_private, whatever the last one left
// allocated, freed or marked. The classic bug is an array given back with a
// slot still written, which a new pool reads as a page table's memory.
TEST(PfnPool, ANewPoolFindsNoSlotTheLastOneWrote) {
  constexpr uint64_t kFrames = 8192;
  int marker = 0;
  for (int round = 0; round < 4; round++) {
    PfnPool pool(kFrames);
    for (uint64_t f = 0; f < kFrames; f++) {
      ASSERT_EQ(pool.page_ptr(Pfn{f}), nullptr) << "round " << round << ", pfn " << f;
      ASSERT_EQ(pool.page_private(Pfn{f}), nullptr) << "round " << round << ", pfn " << f;
    }
    // Tables in the first chunks, a 2M run further on with a private mark
    // on a frame that has no memory, and a few tables freed again.
    std::vector<Pfn> tables;
    for (int i = 0; i < 700; i++) tables.push_back(pool.alloc(PageOwner::PageTable, true));
    const Pfn run = pool.alloc_run_2m(PageOwner::GuestPrivate);
    ASSERT_TRUE(run.valid());
    pool.set_page_private(Pfn{run.v + 17}, &marker);
    for (size_t i = 0; i < tables.size(); i++) {
      ASSERT_TRUE(tables[i].valid());
      ASSERT_NE(pool.page_ptr(tables[i]), nullptr);
      pool.set_page_private(tables[i], &marker);
      if (i % 3 == 0) EXPECT_TRUE(pool.free(tables[i], PageOwner::PageTable));
    }
    EXPECT_EQ(pool.page_private(Pfn{run.v + 17}), &marker);
  }
}

// Resident memory of this process, from /proc/self/statm.
uint64_t resident_bytes() {
  std::ifstream f("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

// The slot array is backed by the host only where a slot was written: a TD
// frees millions of guest frames that never had a slot, and clearing theirs
// anyway once made a 64 GiB td-life hold 256 MiB more at its peak.
TEST(PfnPool, FreeingFramesWithoutMemoryLeavesTheirSlotsUntouched) {
  constexpr uint64_t kFrames = uint64_t{4} << 20;  // 64 MiB of slots
  PfnPool pool(kFrames);
  const uint64_t before = resident_bytes();
  std::vector<Pfn> runs;
  for (Pfn r; (r = pool.alloc_run_2m(PageOwner::GuestPrivate)).valid();) runs.push_back(r);
  ASSERT_EQ(runs.size(), kFrames / 512);
  for (const Pfn r : runs)
    for (uint64_t i = 0; i < 512; i++) ASSERT_TRUE(pool.free(Pfn{r.v + i}, PageOwner::GuestPrivate));
  const uint64_t after = resident_bytes();
  const uint64_t grew = after - std::min(before, after);
  EXPECT_LT(grew, uint64_t{24} << 20) << "freeing 4M frames without memory touched " << (grew >> 20) << " MiB";
  EXPECT_EQ(pool.violations(), 0u);
}

TEST(PfnPool, APfnPastThePoolHasNoMemory) {
  PfnPool pool(4096);
  void* priv = &pool;
  EXPECT_EQ(pool.page_ptr(Pfn{4096}), nullptr);
  EXPECT_EQ(pool.page_private(Pfn{uint64_t{1} << 39}), nullptr);
  EXPECT_EQ(pool.page_ptr_private(Pfn{5000}, &priv), nullptr);
  EXPECT_EQ(priv, nullptr);
}

TEST(MemoryCache, TopupFillsToCapacityWithInitValueAndFailsCleanly) {
  PfnPool pool(4096);
  BugTracker kvm;
  PageCache c(pool, {PageOwner::PageTable, true, 0x8000000000000000ull, 8});
  EXPECT_EQ(c.topup(4, nullptr), 0);
  EXPECT_EQ(c.nobjs(), 8);
  EXPECT_EQ(c.topup(4, nullptr), 0);  // enough held: no allocation
  EXPECT_EQ(pool.count(PageOwner::PageTable), 8u);
  const Pfn p = c.alloc(kvm);
  for (int i = 0; i < kSptePerPage; i++) ASSERT_EQ(pool.page_ptr(p)[i], 0x8000000000000000ull);
  pool.free(p, PageOwner::PageTable);
  FaultInjector inj;
  inj.arm(InjectPoint::CacheTopup, 1, Injection::NoMem);
  for (int i = 0; i < 7; i++) pool.free(c.alloc(kvm), PageOwner::PageTable);
  EXPECT_EQ(c.topup(1, &inj), -ENOMEM);
  EXPECT_EQ(c.nobjs(), 0);
  // An empty cache WARNs and still tries to allocate.
  const Pfn q = c.alloc(kvm);
  EXPECT_TRUE(q.valid());
  EXPECT_EQ(kvm.hits(Site::memcache_empty), 1u);
  pool.free(q, PageOwner::PageTable);
  c.free_all();
  EXPECT_EQ(pool.in_use(), 0u);
}

// A backing's frame array goes to the next backing of its size (an explored
// execution builds and drops its memslots): the next one must find no page
// populated, whatever the last left populated at 4K, in 2M runs or punched.
TEST(Backing, ANewBackingFindsNoFrameTheLastOneHeld) {
  PfnPool pool(1u << 14);
  constexpr uint64_t kPages = 3 * 512 + 100;  // a tail block that is not whole
  for (int round = 0; round < 3; round++) {
    Backing b(pool, PageOwner::GuestPrivate, kPages, round == 1 ? PgLevel::k2M : PgLevel::k4K);
    for (uint64_t i = 0; i < kPages; i++) ASSERT_FALSE(b.peek_pfn(i).valid()) << "round " << round << ", page " << i;
    EXPECT_EQ(b.populated(), 0u);
    for (uint64_t i = round; i < kPages; i += 3) ASSERT_TRUE(b.get_pfn(i).valid());
    b.punch_hole(512, 200);
    EXPECT_GT(b.populated(), 0u);
  }
  EXPECT_EQ(pool.count(PageOwner::GuestPrivate), 0u);
  EXPECT_EQ(pool.violations(), 0u);
}

TEST(Backing, HugeBackingUsesRunsAndPunchingBreaksThem) {
  PfnPool pool(4096);
  Backing b(pool, PageOwner::GuestPrivate, 1024, PgLevel::k2M);
  PgLevel lvl;
  const Pfn p = b.get_pfn(5, &lvl);
  EXPECT_EQ(lvl, PgLevel::k2M);
  EXPECT_EQ(b.peek_pfn(0).v % 512, 0u);
  EXPECT_EQ(p, b.peek_pfn(0) + 5);
  EXPECT_EQ(b.populated(), 512u);
  b.punch_hole(5, 1);
  EXPECT_FALSE(b.peek_pfn(5).valid());
  b.get_pfn(6, &lvl);
  EXPECT_EQ(lvl, PgLevel::k4K);  // no longer a whole run
  b.release_all();
  EXPECT_EQ(pool.in_use(), 0u);
  EXPECT_EQ(pool.violations(), 0u);
}

TEST(Backing, OneGigBackingUsesAlignedGigRuns) {
  PfnPool pool(3u << 18);  // 3 GiB: exactly one 1G-aligned free gigabyte after a stray page
  const Pfn stray = pool.alloc(PageOwner::HostSource);
  Backing b(pool, PageOwner::GuestShared, 1u << 18, PgLevel::k1G);
  PgLevel lvl;
  const Pfn p = b.get_pfn(12345, &lvl);
  EXPECT_EQ(lvl, PgLevel::k1G);
  EXPECT_EQ(b.peek_pfn(0).v % (1u << 18), 0u);
  EXPECT_NE(b.peek_pfn(0).v, 0u);  // the first gigabyte holds the stray page
  EXPECT_EQ(p, b.peek_pfn(0) + 12345);
  b.punch_hole(0, 1);
  EXPECT_EQ(b.get_pfn(12345, &lvl), p);
  EXPECT_EQ(lvl, PgLevel::k4K);
  b.release_all();
  pool.free(stray, PageOwner::HostSource);
  EXPECT_EQ(pool.in_use(), 0u);
}

}  // namespace
}  // namespace mirrormmu::test
