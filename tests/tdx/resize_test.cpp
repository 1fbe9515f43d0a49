// SPDX-License-Identifier: MIT
// TDH.MEM.PAGE.DEMOTE and TDH.MEM.PAGE.PROMOTE.
#include "tdx/tdx_fixture.h"

namespace mirrormmu::tdx::test {
namespace {

constexpr uint64_t kGpa = 0x40000000;  // 1G-aligned, so 2M-aligned

class ResizeTest : public TdxTest {
 protected:
  void SetUp() override { runnable_td(); }
  Pfn sept_page() {
    const Pfn p = page(PageOwner::SeptPage);
    sept_pages.push_back(p);
    return p;
  }
};

TEST_F(ResizeTest, DemoteWhileRunnableNeedsBlockAndTrack) {
  const Pfn huge = aug(kGpa, 1);
  const Pfn pt = sept_page();
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_demote(kGpa, 1, pt); }), rcx(TDX_GPA_RANGE_NOT_BLOCKED));
  ASSERT_EQ(td.tdh_mem_range_block(kGpa, 1).status, TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_demote(kGpa, 1, pt); }), rcx(TDX_TLB_TRACKING_NOT_DONE));
  ASSERT_EQ(td.tdh_mem_track(), TDX_SUCCESS);
  const uint64_t children_before = td.chldcnt();
  ASSERT_EQ(td.tdh_mem_page_demote(kGpa, 1, pt).status, TDX_SUCCESS);
  EXPECT_EQ(state(kGpa, 1), SeptState::NlMapped);
  EXPECT_EQ(td.read_entry(kGpa, 1).pfn, pt);
  EXPECT_EQ(td.pamt_type(pt), PamtType::Ept);
  EXPECT_EQ(td.chldcnt(), children_before + 1);
  // 512 children, unblocked (PENDING_BLOCKED -> PENDING), frames contiguous.
  for (uint64_t i = 0; i < 512; i += 37) {
    const auto e = td.read_entry(kGpa + i * k4K, 0);
    EXPECT_EQ(e.state, SeptState::Pending);
    EXPECT_EQ(e.pfn, huge + i);
    EXPECT_EQ(td.pamt_type(huge + i), PamtType::Reg);
  }
}

TEST_F(ResizeTest, DemotedChildrenCanBeAcceptedAndRemovedOneByOne) {
  map_accepted(kGpa, 1);
  block_and_track(kGpa, 1);
  ASSERT_EQ(td.tdh_mem_page_demote(kGpa, 1, sept_page()).status, TDX_SUCCESS);
  EXPECT_EQ(state(kGpa + 5 * k4K, 0), SeptState::Mapped);  // BLOCKED -> MAPPED
  block_and_track(kGpa + 5 * k4K, 0);
  EXPECT_EQ(td.tdh_mem_page_remove(kGpa + 5 * k4K, 0).status, TDX_SUCCESS);
  EXPECT_EQ(state(kGpa + 5 * k4K, 0), SeptState::Free);
}

TEST_F(ResizeTest, DemoteChecksItsOperands) {
  aug(kGpa, 1);
  block_and_track(kGpa, 1);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_demote(kGpa, 0, sept_page()); }), rcx(TDX_OPERAND_INVALID));
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_demote(kGpa + k4K, 1, sept_page()); }), rcx(TDX_OPERAND_INVALID));
  // The new S-EPT page must be free in the PAMT: the TDR is not.
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_demote(kGpa, 1, tdr); }),
            with_operand(TDX_PAGE_METADATA_INCORRECT, Operand::R8));
  // A non-leaf cannot be demoted.
  link(kGpa + k2M, 0);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_demote(kGpa + k2M, 1, sept_page()); }), rcx(TDX_EPT_ENTRY_STATE_INCORRECT));
}

TEST_F(ResizeTest, PromoteUndoesDemote) {
  const Pfn huge = aug(kGpa, 1);
  block_and_track(kGpa, 1);
  const Pfn pt = sept_page();
  ASSERT_EQ(td.tdh_mem_page_demote(kGpa, 1, pt).status, TDX_SUCCESS);
  const uint64_t children = td.chldcnt();
  // Promotion, too, needs the (now non-leaf) entry blocked and tracked.
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_promote(kGpa, 1); }), rcx(TDX_GPA_RANGE_NOT_BLOCKED));
  block_and_track(kGpa, 1);
  ASSERT_EQ(td.tdh_mem_page_promote(kGpa, 1).status, TDX_SUCCESS);
  const auto e = td.read_entry(kGpa, 1);
  EXPECT_EQ(e.state, SeptState::Pending);
  EXPECT_EQ(e.pfn, huge);
  EXPECT_EQ(td.pamt_type(pt), PamtType::Nda);
  EXPECT_EQ(td.chldcnt(), children - 1);
}

TEST_F(ResizeTest, PromoteRefusesNonUniformChildren) {
  aug(kGpa, 1);
  block_and_track(kGpa, 1);
  ASSERT_EQ(td.tdh_mem_page_demote(kGpa, 1, sept_page()).status, TDX_SUCCESS);
  block_and_track(kGpa + 7 * k4K, 0);
  ASSERT_EQ(td.tdh_mem_page_remove(kGpa + 7 * k4K, 0).status, TDX_SUCCESS);
  block_and_track(kGpa, 1);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_promote(kGpa, 1); }), rcx(TDX_EPT_INVALID_PROMOTE_CONDITIONS));
}

// A host interrupt pending while the leaf runs: arm the next HostInterrupt
// point the module asks about.
void interrupt_next(FaultInjector& inject) {
  inject.arm(InjectPoint::HostInterrupt, inject.seen(InjectPoint::HostInterrupt) + 1, Injection::Busy);
}

TEST_F(ResizeTest, APendingInterruptDoesNotStopDemoteOnA1_5_28Module) {
  aug(kGpa, 1);
  block_and_track(kGpa, 1);
  interrupt_next(inject);
  EXPECT_EQ(td.tdh_mem_page_demote(kGpa, 1, sept_page()).status, TDX_SUCCESS);
  EXPECT_EQ(inject.fired(), 0u);  // not even asked: no L2 VMs
}

TEST_F(ResizeTest, PromoteIsInterruptibleOnEveryModule) {
  aug(kGpa, 1);
  block_and_track(kGpa, 1);
  ASSERT_EQ(td.tdh_mem_page_demote(kGpa, 1, sept_page()).status, TDX_SUCCESS);
  block_and_track(kGpa, 1);
  interrupt_next(inject);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_promote(kGpa, 1); }), TDX_INTERRUPTED_RESTARTABLE);
  // Restarted from scratch, it completes.
  EXPECT_EQ(td.tdh_mem_page_promote(kGpa, 1).status, TDX_SUCCESS);
}

// Before 1.5.28 (no ENHANCED_DEMOTE_INTERRUPTIBILITY), DEMOTE gives up on
// a pending interrupt before committing anything.
class OldModuleResizeTest : public TdxTest {
 protected:
  OldModuleResizeTest() : TdxTest(ModuleConfig{.enhanced_demote_interruptibility = false}) {}
  void SetUp() override { runnable_td(); }
};

TEST_F(OldModuleResizeTest, DemoteIsInterruptedAndRestartsFromScratch) {
  const Pfn huge = aug(kGpa, 1);
  block_and_track(kGpa, 1);
  const Pfn pt = page(PageOwner::SeptPage);
  sept_pages.push_back(pt);
  interrupt_next(inject);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_demote(kGpa, 1, pt); }), TDX_INTERRUPTED_RESTARTABLE);
  EXPECT_EQ(td.pamt_type(pt), PamtType::Nda);
  ASSERT_EQ(td.tdh_mem_page_demote(kGpa, 1, pt).status, TDX_SUCCESS);
  EXPECT_EQ(td.read_entry(kGpa + 3 * k4K, 0).pfn, huge + 3);
}

}  // namespace
}  // namespace mirrormmu::tdx::test
