// SPDX-License-Identifier: MIT
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "base/bug.h"
#include "base/inject.h"
#include "base/page_blocks.h"
#include "base/sanitizers.h"
#include "base/types.h"

namespace mirrormmu::test {
namespace {

// A recycled block comes back whole and writable, last in first out.
TEST(PageBlocks, RecycledBlockIsHandedOutAgainWritable) {
  void* a = page_block_alloc();
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % kPageSize, 0u);
  page_block_recycle(a);
  void* b = page_block_alloc();
  EXPECT_EQ(b, a);
  // ASan would report this if the block were still poisoned.
  std::memset(b, 0x5a, kPageSize);
  EXPECT_EQ(static_cast<unsigned char*>(b)[kPageSize - 1], 0x5a);
  page_block_free(b);
}

#ifdef MIRRORMMU_ASAN
// The recycler's classic bug: a page table freed at the end of an execution
// and still reachable from a stale pointer. While the block waits it is
// poisoned, so the stale access is a report, not a silent read of whatever
// the next execution's table holds.
TEST(PageBlocksDeathTest, TouchingAWaitingBlockIsReported) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto* p = static_cast<volatile uint64_t*>(page_block_alloc());
  p[3] = 1;
  page_block_recycle(const_cast<uint64_t*>(p));
  EXPECT_DEATH(p[3] = 2, "use-after-poison");
  page_block_free(page_block_alloc());
}
#endif

TEST(Types, LevelGeometryFollowsTheKernel) {
  EXPECT_EQ(pages_per_hpage(PgLevel::k4K), 1u);
  EXPECT_EQ(pages_per_hpage(PgLevel::k2M), 512u);
  EXPECT_EQ(pages_per_hpage(PgLevel::k1G), 512u * 512u);
  EXPECT_EQ(gfn_round_for_level(Gfn{0x12345}, PgLevel::k2M), Gfn{0x12200});
  EXPECT_TRUE(gfn_aligned(Gfn{0x40000}, PgLevel::k1G));
  EXPECT_FALSE(gfn_aligned(Gfn{0x40001}, PgLevel::k2M));
  // Index at each level: 9 bits of the gfn per level.
  const uint64_t gfn = (3ull << 27) | (5ull << 18) | (7ull << 9) | 11;
  EXPECT_EQ(spte_index(gfn, PgLevel::k4K), 11);
  EXPECT_EQ(spte_index(gfn, PgLevel::k2M), 7);
  EXPECT_EQ(spte_index(gfn, PgLevel::k1G), 5);
  EXPECT_EQ(spte_index(gfn, PgLevel::k512G), 3);
  EXPECT_EQ(lower(PgLevel::k2M), PgLevel::k4K);
  EXPECT_EQ(higher(PgLevel::k2M), PgLevel::k1G);
}

TEST(BugTracker, KvmBugOnMarksTheVmBuggedAndWarnDoesNot) {
  BugTracker kvm;
  EXPECT_FALSE(warn_on_once(false, kvm, Site::map_no_goal));
  EXPECT_TRUE(warn_on_once(true, kvm, Site::map_no_goal));
  EXPECT_FALSE(kvm.bugged());
  EXPECT_EQ(kvm.hits(Site::map_no_goal), 1u);
  EXPECT_TRUE(kvm_bug_on(true, kvm, Site::set_spte_mirror_present));
  EXPECT_TRUE(kvm.bugged());
  EXPECT_EQ(kvm.first_bug(), Site::set_spte_mirror_present);
  // Later bugs are counted but the first one stays the cause.
  kvm_bug_on(true, kvm, Site::map_mirror_split);
  EXPECT_EQ(kvm.first_bug(), Site::set_spte_mirror_present);
  EXPECT_EQ(kvm.total_hits(), 3u);
}

TEST(BugTracker, TdxBugOnTreatsAnyNonZeroStatusAsFailure) {
  BugTracker kvm;
  EXPECT_FALSE(tdx_bug_on(0, kvm, Site::tdh_mem_page_aug));
  // Bit 63 clear ("warning" class) is still a failure for TDX_BUG_ON.
  EXPECT_TRUE(tdx_bug_on(0x00000B0700000001ull, kvm, Site::tdh_mem_range_block));
  EXPECT_TRUE(kvm.bugged());
}

TEST(BugTracker, EverySiteHasANameAndText) {
  for (size_t i = 0; i < kSiteCount; i++) {
    const SiteInfo& s = site_info(static_cast<Site>(i));
    EXPECT_FALSE(s.id.empty());
    EXPECT_FALSE(s.text.empty());
  }
}

TEST(FaultInjector, FiresExactlyAtTheArmedOrdinalOfItsKind) {
  FaultInjector inj;
  inj.arm(InjectPoint::Seamcall, 3, Injection::Busy);
  EXPECT_EQ(inj.check(InjectPoint::Seamcall), Injection::None);
  EXPECT_EQ(inj.check(InjectPoint::CacheTopup), Injection::None);  // other kind, own count
  EXPECT_EQ(inj.check(InjectPoint::Seamcall), Injection::None);
  EXPECT_EQ(inj.check(InjectPoint::Seamcall), Injection::Busy);
  EXPECT_EQ(inj.check(InjectPoint::Seamcall), Injection::None);
  EXPECT_EQ(inj.fired(), 1u);
  EXPECT_EQ(inj.seen(InjectPoint::Seamcall), 4u);
  EXPECT_EQ(inj.seen(InjectPoint::CacheTopup), 1u);
}

}  // namespace
}  // namespace mirrormmu::test
