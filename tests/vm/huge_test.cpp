// SPDX-License-Identifier: MIT
// Private huge pages: 2M AUG once the TD runs, demotion for the guest's 4K
// accept (with the guest inhibit) and for conversions and holes that cut a
// 2M mapping, promotion refused, the designs that cannot split refusing,
// and who owns external_spt under each allocation policy.
#include <gtest/gtest.h>

#include "check/checker.h"
#include "spte/spte.h"
#include "vm/vm.h"

namespace mirrormmu::test {
namespace {

constexpr uint64_t kRam = 1ull << 32;
constexpr uint64_t k2M = 2ull << 20;
constexpr uint64_t k4K = kPageSize;

struct HugeTd {
  explicit HugeTd(std::string design, ExternalSptPolicy policy = ExternalSptPolicy::KvmCache,
                  SplitAlloc split = SplitAlloc::Prefilled)
      : vm(cfg(std::move(design), policy, split)), ck(vm) {}
  static VmConfig cfg(std::string design, ExternalSptPolicy policy, SplitAlloc split) {
    VmConfig c;
    c.nr_vcpus = 2;
    c.pool_pages = 1u << 14;
    c.design = std::move(design);
    c.huge_pages = true;
    c.external_spt_policy = policy;
    c.split_alloc = split;
    return c;
  }
  void boot(uint64_t image_pages = 0) {
    ASSERT_EQ(vm.create(), 0);
    ASSERT_EQ(vm.add_memslot(0, kRam, 4 * k2M, kMemGuestMemfd), 0);
    if (image_pages) {
      ASSERT_EQ(vm.init_mem_region(kRam, image_pages), 0);
    }
    ASSERT_EQ(vm.finalize(), 0);
    ASSERT_EQ(vm.set_memory_attributes(kRam, 4 * k2M, true), 0);
  }
  void expect_clean(const char* after) {
    ck.check(after);
    EXPECT_TRUE(ck.ok()) << ck.describe();
  }
  void end_of_life() {
    vm.destroy();
    ck.check_end_of_life();
    EXPECT_TRUE(ck.ok()) << ck.describe();
    EXPECT_EQ(vm.pool().in_use(), 0u);
  }
  int64_t pages(PgLevel l) { return vm.mmu().stats().pages(lvl(l) - 1); }
  tdx::TdxModule::EntryView sept(uint64_t gpa, int level) { return vm.module()->read_entry(gpa, level); }
  uint64_t demotes() { return vm.tdx()->stats().demotes; }

  Vm vm;
  Checker ck;
};

class HugeDesign : public ::testing::TestWithParam<std::string> {};

TEST_P(HugeDesign, TwoMegAcceptMapsOneTwoMegLeaf) {
  HugeTd td(GetParam());
  td.boot();
  ASSERT_EQ(td.vm.vcpu_access(0, kRam + 7 * k4K, true, PgLevel::k2M), ExitReason::None);
  EXPECT_EQ(td.pages(PgLevel::k2M), 1);
  EXPECT_EQ(td.pages(PgLevel::k4K), 0);
  EXPECT_EQ(td.sept(kRam, 1).state, tdx::SeptState::Mapped);
  // Another page of the block is already accepted: no fault, no split.
  ASSERT_EQ(td.vm.vcpu_access(1, kRam + 300 * k4K, true), ExitReason::None);
  EXPECT_EQ(td.demotes(), 0u);
  td.expect_clean("2M accept");
  td.end_of_life();
}

TEST_P(HugeDesign, FourKAcceptInsidePendingTwoMDemotesAndInhibits) {
  HugeTd td(GetParam());
  td.boot();
  // The guest touches the page and accepts at 4K: KVM mapped 2M (PENDING),
  // the accept exits, KVM demotes under the exclusive lock.
  ASSERT_EQ(td.vm.vcpu_access(0, kRam + k2M + 5 * k4K, true), ExitReason::None);
  EXPECT_EQ(td.demotes(), 1u);
  EXPECT_EQ(td.vm.op_stats().accept_mismatches, 1u);
  EXPECT_EQ(td.pages(PgLevel::k2M), 0);
  EXPECT_EQ(td.pages(PgLevel::k4K), 512);
  EXPECT_EQ(td.sept(kRam + k2M + 5 * k4K, 0).state, tdx::SeptState::Mapped);
  EXPECT_EQ(td.sept(kRam + k2M + 6 * k4K, 0).state, tdx::SeptState::Pending);
  td.expect_clean("4K accept");
  // The block is never mapped huge again: punched and touched once more, it
  // comes back at 4K even with a 2M accept.
  ASSERT_EQ(td.vm.punch_hole(kRam + k2M, k2M), 0);
  ASSERT_EQ(td.vm.vcpu_access(1, kRam + k2M, true, PgLevel::k2M), ExitReason::None);
  EXPECT_EQ(td.pages(PgLevel::k2M), 0);
  EXPECT_EQ(td.pages(PgLevel::k4K), 1);
  td.expect_clean("re-touch after inhibit");
  td.end_of_life();
}

TEST_P(HugeDesign, ConversionThatCutsTwoMSplitsHeadAndTail) {
  HugeTd td(GetParam());
  td.boot();
  ASSERT_EQ(td.vm.vcpu_access(0, kRam, true, PgLevel::k2M), ExitReason::None);
  ASSERT_EQ(td.vm.vcpu_access(0, kRam + k2M, true, PgLevel::k2M), ExitReason::None);
  ASSERT_EQ(td.pages(PgLevel::k2M), 2);
  // [2M - 8 pages, 2M + 8 pages) cuts both mappings.
  ASSERT_EQ(td.vm.set_memory_attributes(kRam + k2M - 8 * k4K, 16 * k4K, false), 0);
  EXPECT_EQ(td.demotes(), 2u);
  EXPECT_EQ(td.pages(PgLevel::k2M), 0);
  EXPECT_EQ(td.pages(PgLevel::k4K), 2 * 512 - 16);
  // Outside the range the guest's data is still mapped and accepted.
  EXPECT_EQ(td.sept(kRam + k2M - 9 * k4K, 0).state, tdx::SeptState::Mapped);
  EXPECT_EQ(td.sept(kRam + k2M + 8 * k4K, 0).state, tdx::SeptState::Mapped);
  EXPECT_EQ(td.sept(kRam + k2M, 0).state, tdx::SeptState::Free);
  td.expect_clean("conversion");
  // An aligned conversion of a whole 2M mapping needs no split.
  ASSERT_EQ(td.vm.vcpu_access(0, kRam + 2 * k2M, true, PgLevel::k2M), ExitReason::None);
  ASSERT_EQ(td.vm.set_memory_attributes(kRam + 2 * k2M, k2M, false), 0);
  EXPECT_EQ(td.demotes(), 2u);
  td.expect_clean("aligned conversion");
  td.end_of_life();
}

TEST_P(HugeDesign, TheBuildStaysFourK) {
  HugeTd td(GetParam());
  td.boot(512);
  // PAGE.ADD measures 4K pages: a full 2M image block is still 512 leaves.
  EXPECT_EQ(td.pages(PgLevel::k4K), 512);
  EXPECT_EQ(td.pages(PgLevel::k2M), 0);
  td.expect_clean("build");
  td.end_of_life();
}

INSTANTIATE_TEST_SUITE_P(Designs, HugeDesign, ::testing::Values("hugepage-v5", "centralized-rfc-fixed", "split-hook", "single-hook"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

// The guest goes to 4K for the rest of a block whose 2M accept failed, but
// only within that accept_memory() call: once the block has been converted
// away and back, the guest's next accept there is a new call and tries 2M
// first again. (It fails again: KVM kept the emptied 4K table under the
// block and does not promote over it, so the block is mapped 4K again.)
TEST(HugePages, AConversionStartsTheGuestsAcceptOver) {
  HugeTd td("hugepage-v5");
  td.boot();
  // Half of the second block shared: KVM can only map its private half 4K.
  ASSERT_EQ(td.vm.set_memory_attributes(kRam + k2M + k2M / 2, k2M / 2, false), 0);
  ASSERT_EQ(td.vm.vcpu_access(0, kRam + k2M, true, PgLevel::k2M), ExitReason::None);
  EXPECT_EQ(td.pages(PgLevel::k4K), 1);
  EXPECT_EQ(td.vm.op_stats().accepts, 2u);  // 2M (a size mismatch), then 4K
  // Another page of the block in the same loop: straight to 4K.
  ASSERT_EQ(td.vm.vcpu_access(0, kRam + k2M + k4K, true, PgLevel::k2M), ExitReason::None);
  EXPECT_EQ(td.vm.op_stats().accepts, 3u);
  // Away and back: private again, nothing mapped in it.
  ASSERT_EQ(td.vm.set_memory_attributes(kRam + k2M, k2M, false), 0);
  ASSERT_EQ(td.vm.set_memory_attributes(kRam + k2M, k2M, true), 0);
  ASSERT_EQ(td.pages(PgLevel::k4K), 0);
  ASSERT_EQ(td.vm.vcpu_access(0, kRam + k2M + 2 * k4K, true, PgLevel::k2M), ExitReason::None);
  EXPECT_EQ(td.vm.op_stats().accepts, 5u);  // 2M tried again, then 4K
  EXPECT_EQ(td.pages(PgLevel::k4K), 1);
  EXPECT_EQ(td.pages(PgLevel::k2M), 0);
  // A conversion elsewhere leaves the fallback alone.
  ASSERT_EQ(td.vm.set_memory_attributes(kRam + 3 * k2M, k2M, false), 0);
  ASSERT_EQ(td.vm.vcpu_access(0, kRam + k2M + 3 * k4K, true, PgLevel::k2M), ExitReason::None);
  EXPECT_EQ(td.vm.op_stats().accepts, 6u);
  td.expect_clean("reconverted accept");
  td.end_of_life();
}

TEST(HugePages, KvmKeepsPrivateMemoryAtFourKOnAModuleWithInterruptibleDemote) {
  VmConfig c = HugeTd::cfg("upstream", ExternalSptPolicy::KvmCache, SplitAlloc::Prefilled);
  c.design = "hugepage-v5";
  c.enhanced_demote_interruptibility = false;
  Vm vm(c);
  Checker ck(vm);
  ASSERT_EQ(vm.create(), 0);
  ASSERT_EQ(vm.add_memslot(0, kRam, 4 * k2M, kMemGuestMemfd), 0);
  ASSERT_EQ(vm.finalize(), 0);
  ASSERT_EQ(vm.set_memory_attributes(kRam, 4 * k2M, true), 0);
  ASSERT_EQ(vm.vcpu_access(0, kRam + 7 * k4K, true, PgLevel::k2M), ExitReason::None);
  EXPECT_EQ(vm.mmu().stats().pages(1), 0);
  EXPECT_EQ(vm.mmu().stats().pages(0), 1);
  EXPECT_EQ(vm.module()->stats(tdx::Leaf::MEM_PAGE_DEMOTE).calls, 0u);
  ck.check("4K accept");
  EXPECT_TRUE(ck.ok()) << ck.describe();
}

TEST(HugePages, BaselineRefusesThem) {
  VmConfig c = HugeTd::cfg("baseline", ExternalSptPolicy::KvmCache, SplitAlloc::Prefilled);
  EXPECT_NE(vm_config_refusal(c).find("cannot map private huge pages"), std::string::npos);
  Vm vm(c);
  EXPECT_EQ(vm.create(), -EOPNOTSUPP);
  c.huge_pages = false;
  EXPECT_EQ(vm_config_refusal(c), "");
}

TEST(HugePages, TheCheckerFlagsAPromotion) {
  HugeTd td("centralized-rfc-fixed");
  td.boot();
  // Not something the MMU does: a table turned into a huge leaf, as a
  // design that promoted would report it.
  const uint64_t table = spte::make_nonleaf(Pfn{0x100});
  const uint64_t huge = spte::make_leaf(Pfn{0x200}, PgLevel::k2M, {.writable = true});
  td.ck.on_spte_changed({Gfn{kRam >> kPageShift}, PgLevel::k2M, table, huge, false, true});
  ASSERT_FALSE(td.ck.ok());
  EXPECT_EQ(td.ck.violations().front().invariant, "mirror_promotion");
}

// ---- who owns external_spt -------------------------------------------------

TEST(ExternalSptOwnership, KvmCachePagesGoOutAndComeBackAsSeptPages) {
  HugeTd td("centralized-rfc-fixed");
  td.boot();
  ASSERT_EQ(td.vm.vcpu_access(0, kRam + 5 * k4K, true), ExitReason::None);  // a demotion
  td.end_of_life();
  const auto sept = td.vm.pool().flow(PageOwner::SeptPage);
  EXPECT_GT(sept.allocated, 0u);
  EXPECT_EQ(sept.allocated, sept.freed);
  EXPECT_EQ(sept.transferred_in, 0u);
  EXPECT_EQ(td.vm.pool().flow(PageOwner::TdxPool).allocated, 0u);
}

TEST(ExternalSptOwnership, TdxPoolPagesAreHandedToTheMmuWhichFreesThem) {
  HugeTd td("centralized-rfc-fixed", ExternalSptPolicy::TdxPool);
  td.boot();
  ASSERT_EQ(td.vm.vcpu_access(0, kRam + 5 * k4K, true), ExitReason::None);
  EXPECT_GT(td.vm.tdx()->stats().pool_handouts, 0u);
  td.end_of_life();
  const auto pool = td.vm.pool().flow(PageOwner::TdxPool);
  const auto sept = td.vm.pool().flow(PageOwner::SeptPage);
  // Every S-EPT page came from the TDX pool and went back through the MMU;
  // what the pool kept was freed as the pool's.
  EXPECT_EQ(sept.allocated, 0u);
  EXPECT_EQ(sept.transferred_in, pool.transferred_out);
  EXPECT_EQ(sept.freed, sept.transferred_in);
  EXPECT_EQ(pool.allocated, pool.transferred_out + pool.freed);
  EXPECT_EQ(td.vm.tdx()->stats().pool_handouts, pool.transferred_out);
}

TEST(ExternalSptOwnership, UnfilledSplitTablesAreWrittenBeforeTheyAreReachable) {
  HugeTd td("split-hook", ExternalSptPolicy::KvmCache, SplitAlloc::Unfilled);
  td.boot();
  ASSERT_EQ(td.vm.vcpu_access(0, kRam + 5 * k4K, true), ExitReason::None);
  EXPECT_EQ(td.demotes(), 1u);
  td.expect_clean("split from an unfilled table");
  td.end_of_life();
}

TEST(ExternalSptOwnership, TheCheckerSeesAnEntryNobodyWrote) {
  HugeTd td("split-hook", ExternalSptPolicy::KvmCache, SplitAlloc::Unfilled);
  td.boot();
  ASSERT_EQ(td.vm.vcpu_access(0, kRam + 5 * k4K, true), ExitReason::None);
  // Plant the allocator's pattern in the split table, as a split that
  // skipped an entry would have left it (and put the entry back after).
  uint64_t* planted = nullptr;
  uint64_t saved = 0;
  {
    sync::WriteGuard lock(td.vm.mmu().mmu_lock());
    sync::RcuReadGuard rcu;
    td.vm.mmu().for_each_root([&](MmuPage* root) {
      if (!root->is_mirror()) return;
      TdpIter it(td.vm.pool(), root, PgLevel::k4K, Gfn::from_gpa(kRam + 9 * k4K), 0);
      for (; it.valid && it.level != PgLevel::k4K; it.next()) {}
      ASSERT_TRUE(it.valid);
      planted = it.sptep;
      saved = *planted;
      *planted = kUnfilledSpte;
    });
  }
  td.ck.check("planted");
  ASSERT_FALSE(td.ck.ok());
  bool seen = false;
  for (const auto& v : td.ck.violations()) seen |= v.invariant == "spte_unwritten";
  EXPECT_TRUE(seen) << td.ck.describe();
  ASSERT_NE(planted, nullptr);
  *planted = saved;
}

}  // namespace
}  // namespace mirrormmu::test
