// SPDX-License-Identifier: GPL-2.0-only
// The kernel's own TDP MMU running in user space: each test drives the
// tree's code through the glue and checks what the tree's tracepoints and
// page stats say, so a shim that silently did nothing would fail here.
#include <gtest/gtest.h>

#include "oracle/kernel_mmu.h"

namespace mirrormmu::oracle {
namespace {

constexpr uint64_t kSlotPages = 1ull << 19;  // 2 GiB at gfn 0: room for 1G pages

TEST(KernelMmu, BuildsFromTheTreeItNames) {
  const std::string v = KernelMmu::tree_version();
  EXPECT_EQ(v.rfind("6.12.", 0), 0u) << v;
  const kmmu_masks m = KernelMmu::masks();
  EXPECT_NE(m.present, 0u);
  EXPECT_NE(m.accessed, 0u) << "EPT A/D bits were set up";
  EXPECT_NE(m.dirty, 0u);
}

TEST(KernelMmu, FaultsMapAtEachLevelAndPageStatsFollow) {
  KernelMmu k;
  ASSERT_EQ(k.memslot_set(0, 0, kSlotPages), 0);
  const auto m = KernelMmu::masks();
  // A 4K read fault, a 2M write fault, a 1G fault.
  EXPECT_GT(k.fault(0, 0x10, 0x1010, false, false, 1), 0);
  EXPECT_GT(k.fault(0, 0x400, 0x20400, true, false, 2), 0);
  EXPECT_GT(k.fault(0, 0x40000, 0x80000, true, false, 3), 0);
  EXPECT_EQ(k.pages(1), 1);
  EXPECT_EQ(k.pages(2), 1);
  EXPECT_EQ(k.pages(3), 1);
  const auto leaves = k.leaves();
  ASSERT_EQ(leaves.size(), 3u);
  EXPECT_EQ(leaves[0].gfn, 0x10u);
  EXPECT_EQ(leaves[0].level, 1);
  EXPECT_EQ((leaves[0].spte & m.base_addr) >> 12, 0x1010u);
  // A read fault on a writable host page maps it writable, and make_spte()
  // pre-sets Dirty on every writable SPTE it builds from a non-writable one
  // (6.12), read fault or not.
  EXPECT_TRUE(leaves[0].spte & m.writable);
  EXPECT_TRUE(leaves[0].spte & m.dirty);
  EXPECT_TRUE(leaves[1].spte & m.dirty);
  EXPECT_EQ(leaves[1].level, 2);
  EXPECT_TRUE(leaves[1].spte & m.writable);
  EXPECT_EQ(leaves[2].level, 3);
  // Every change went through handle_changed_spte's tracepoint.
  EXPECT_GE(k.changes.size(), 3u);
  EXPECT_TRUE(k.warns.empty()) << k.warns[0].cond << " at " << k.warns[0].where();
  EXPECT_EQ(k.destroy(), 0) << "page-table pages left accounted";
}

TEST(KernelMmu, ZapLeafsFlushesAndEmpties) {
  KernelMmu k;
  ASSERT_EQ(k.memslot_set(0, 0, kSlotPages), 0);
  for (uint64_t g = 0; g < 64; g++) ASSERT_GT(k.fault(0, g, 0x1000 + g, true), 0);
  EXPECT_EQ(k.pages(1), 64);
  EXPECT_TRUE(k.zap_leafs(0, 32));
  EXPECT_EQ(k.pages(1), 32);
  EXPECT_EQ(k.flushes_range.load(), 1u);
  k.zap_all();
  EXPECT_EQ(k.pages(1), 0);
  EXPECT_TRUE(k.leaves().empty());
  EXPECT_TRUE(k.warns.empty());
  EXPECT_EQ(k.destroy(), 0);
}

TEST(KernelMmu, DirtyLoggingWriteProtectsAndLogsWrites) {
  KernelMmu k;
  ASSERT_EQ(k.memslot_set(0, 0, 4096), 0);
  for (uint64_t g = 0; g < 16; g++) ASSERT_GT(k.fault(0, g, 0x1000 + g, true), 0);
  ASSERT_EQ(k.memslot_dirty_log(0, true), 0);
  const auto m = KernelMmu::masks();
  for (const auto& l : k.leaves()) EXPECT_FALSE(l.spte & m.writable) << "gfn " << l.gfn;
  ASSERT_GT(k.fault(0, 3, 0x1003, true), 0);
  const auto bits = k.get_dirty_log(0, 4096);
  ASSERT_FALSE(bits.empty());
  EXPECT_EQ(bits[0], 1ull << 3);
  for (const auto& l : k.leaves()) EXPECT_FALSE(l.spte & m.writable) << "re-protected: gfn " << l.gfn;
  EXPECT_TRUE(k.warns.empty());
}

TEST(KernelMmu, FastZapInvalidatesRootsAndTheNextFaultBuildsANewOne) {
  KernelMmu k(2);
  ASSERT_EQ(k.memslot_set(0, 0, 4096), 0);
  ASSERT_GT(k.fault(0, 1, 0x1001, true), 0);
  ASSERT_GT(k.fault(1, 2, 0x1002, true), 0);
  k.zap_all_fast();
  EXPECT_TRUE(k.leaves().empty());
  EXPECT_EQ(k.pages(1), 0);
  // Until the vCPU handles its reload request, is_page_fault_stale() turns
  // every fault on the invalid root away.
  EXPECT_EQ(k.fault(0, 1, 0x1001, true), 1) << "RET_PF_RETRY";
  EXPECT_EQ(k.vcpu_reload(0), 1) << "a new root was loaded";
  ASSERT_GT(k.fault(0, 1, 0x1001, true), 0);
  EXPECT_EQ(k.leaves().size(), 1u);
  EXPECT_TRUE(k.warns.empty());
  EXPECT_EQ(k.destroy(), 0);
}

TEST(KernelMmu, SplittingAHugePageKeepsItsTranslation) {
  KernelMmu k;
  ASSERT_EQ(k.memslot_set(0, 0, 4096), 0);
  ASSERT_GT(k.fault(0, 0x200, 0x40200, true, false, 2), 0);
  ASSERT_EQ(k.pages(2), 1);
  ASSERT_EQ(k.split_huge_pages(0, 1, true), 0);
  EXPECT_EQ(k.pages(2), 0);
  EXPECT_EQ(k.pages(1), 512);
  const auto m = KernelMmu::masks();
  for (const auto& l : k.leaves()) EXPECT_EQ((l.spte & m.base_addr) >> 12, 0x40000 + l.gfn);
  EXPECT_TRUE(k.warns.empty());
}

// Aging is the tree's and the glue's only (the model has none yet): what
// the differential test will compare once it has.
TEST(KernelMmu, AgingClearsAccessedAndTestAgeSeesIt) {
  KernelMmu k;
  ASSERT_EQ(k.memslot_set(0, 0, 4096), 0);
  ASSERT_GT(k.fault(0, 7, 0x1007, true), 0);
  const auto m = KernelMmu::masks();
  ASSERT_TRUE(k.leaves().at(0).spte & m.accessed) << "a fault maps its page accessed";
  EXPECT_TRUE(k.age(0, 16, true));
  EXPECT_TRUE(k.age(0, 16, false)) << "aging reports the young page";
  EXPECT_FALSE(k.leaves().at(0).spte & m.accessed);
  EXPECT_FALSE(k.age(0, 16, true)) << "and it is old afterwards";
  EXPECT_TRUE(k.warns.empty());
}

TEST(KernelMmu, AWarnInTheTreeIsReportedWithItsLine) {
  KernelMmu k;
  ASSERT_EQ(k.memslot_set(0, 0, 4096), 0);
  ASSERT_GT(k.fault(0, 1, 0x1001, true), 0);
  EXPECT_TRUE(k.warns.empty());
  // The classic locking bug: zap everything without mmu_lock. The tree's own
  // lockdep_assert_held_write() in kvm_tdp_mmu_zap_all() must say so.
  k.zap_all_unlocked();
  ASSERT_FALSE(k.warns.empty());
  EXPECT_NE(k.warns[0].where().find("tdp_mmu.c:"), std::string::npos) << k.warns[0].where();
  EXPECT_STREQ(k.warns[0].cond.c_str(), "lockdep_assert_held");
  EXPECT_THROW(KernelMmu second, std::logic_error) << "one oracle VM at a time";
}

}  // namespace
}  // namespace mirrormmu::oracle
