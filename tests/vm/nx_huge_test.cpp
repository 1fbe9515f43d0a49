// SPDX-License-Identifier: MIT
// NX huge pages on a plain VM's direct root: what each fault maps, what
// disallowed_hugepage_adjust() keeps, and what the recovery worker gives
// back.
#include <gtest/gtest.h>

#include "spte/spte.h"
#include "vm/plain_vm.h"

namespace mirrormmu::test {
namespace {

constexpr uint64_t kPfnBase = 0x40000;
constexpr int kRetPfFixed = 5;
constexpr int kRetPfSpurious = 6;

struct NxVm {
  NxVm() : vm(PlainVmConfig{2}) {
    vm.host().set_base(kPfnBase);
    EXPECT_EQ(vm.set_nx_huge_pages(true), 0);
    EXPECT_EQ(vm.memslot_set(0, 0, 0x1000), 0);
  }
  int level_of(uint64_t gfn) {
    int level = 0;
    return vm.lookup(0, gfn, &level) ? level : 0;
  }
  uint64_t spte_of(uint64_t gfn) {
    int level = 0;
    return vm.lookup(0, gfn, &level);
  }
  PlainVm vm;
};

TEST(NxHugePages, ReadsMapHugeWithoutExecAndFetchesSplitTo4K) {
  NxVm t;
  ASSERT_EQ(t.vm.fault(0, 0x200, false, 2), kRetPfFixed);
  EXPECT_EQ(t.level_of(0x200), 2);
  EXPECT_FALSE(t.spte_of(0x200) & spte::kExecutable) << "a huge leaf must not be executable";
  EXPECT_EQ(t.vm.guest_access(0, 0x201, false, true), HwAccess::EptViolation);
  // The split's 4K children are executable again (make_small_spte), so the
  // fetch finds its leaf ready: spurious.
  ASSERT_EQ(t.vm.exec_fault(0, 0x201, 2), kRetPfSpurious);
  EXPECT_EQ(t.level_of(0x201), 1);
  EXPECT_TRUE(t.spte_of(0x201) & spte::kExecutable);
  EXPECT_EQ(t.spte_of(0x201) >> 12 & 0xffffffffff, kPfnBase + 0x201);
  EXPECT_EQ(t.vm.guest_access(0, 0x201, false, true), HwAccess::Walked);
  EXPECT_EQ(t.vm.stats().flushes.load(), 0u) << "a split changes no translation";
}

TEST(NxHugePages, AReadNextToAFetchStaysSmallUntilRecovery) {
  NxVm t;
  ASSERT_EQ(t.vm.exec_fault(0, 0x401, 2), kRetPfFixed);
  EXPECT_EQ(t.level_of(0x401), 1);
  // disallowed_hugepage_adjust(): the read could map 2M, but the table the
  // fetch left stays and the read maps 4K inside it.
  ASSERT_EQ(t.vm.fault(1, 0x4ff, false, 2), kRetPfFixed);
  EXPECT_EQ(t.level_of(0x4ff), 1);
  EXPECT_EQ(t.level_of(0x401), 1) << "the fetched page is still mapped";
  EXPECT_EQ(t.vm.pages(1), 2);
  // The worker zaps the table; the next read maps the region huge again.
  EXPECT_EQ(t.vm.recover_nx_huge_pages(1), 1);
  EXPECT_EQ(t.level_of(0x401), 0);
  EXPECT_EQ(t.vm.stats().flushes.load(), 1u);
  ASSERT_EQ(t.vm.fault(1, 0x4ff, false, 2), kRetPfFixed);
  EXPECT_EQ(t.level_of(0x401), 2);
  EXPECT_EQ(t.vm.recover_nx_huge_pages(1), 0) << "nothing is left to recover";
  EXPECT_TRUE(t.vm.warnings().empty()) << t.vm.warnings().front();
}

TEST(NxHugePages, DirtyLoggedSlotsAreNotRecovered) {
  NxVm t;
  ASSERT_EQ(t.vm.exec_fault(0, 0x601, 2), kRetPfFixed);
  ASSERT_EQ(t.vm.memslot_dirty_log(0, true), 0);
  EXPECT_EQ(t.vm.recover_nx_huge_pages(1), 0);
  EXPECT_EQ(t.level_of(0x601), 1);
}

TEST(NxHugePages, OffMeansHugeExecutableLeavesAndNothingToRecover) {
  PlainVm vm(PlainVmConfig{1});
  vm.host().set_base(kPfnBase);
  ASSERT_EQ(vm.memslot_set(0, 0, 0x1000), 0);
  ASSERT_EQ(vm.exec_fault(0, 0x201, 2), kRetPfFixed);
  int level = 0;
  EXPECT_TRUE(vm.lookup(0, 0x201, &level) & spte::kExecutable);
  EXPECT_EQ(level, 2);
  EXPECT_EQ(vm.recover_nx_huge_pages(1), 0);
  EXPECT_EQ(vm.set_nx_huge_pages(true), -EBUSY) << "only before anything is mapped";
}

}  // namespace
}  // namespace mirrormmu::test
