// SPDX-License-Identifier: MIT
// RANGE.BLOCK, RANGE.UNBLOCK, PAGE.REMOVE, SEPT.REMOVE and the TLB tracking
// they depend on (TRACK, VP.ENTER epochs).
#include "tdx/tdx_fixture.h"

namespace mirrormmu::tdx::test {
namespace {

constexpr uint64_t kGpa = 0x2468000;

class BlockTest : public TdxTest {
 protected:
  void SetUp() override { runnable_td(); }
};

TEST_F(BlockTest, EachUnblockedStateHasABlockedForm) {
  map_accepted(kGpa);
  const uint64_t pending_gpa = kGpa + k4K;
  aug(pending_gpa);
  ASSERT_EQ(td.tdh_mem_range_block(kGpa, 0).status, TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mem_range_block(pending_gpa, 0).status, TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mem_range_block(align_down(kGpa, 1), 1).status, TDX_SUCCESS);
  EXPECT_EQ(state(align_down(kGpa, 1), 1), SeptState::NlBlocked);
  // The walk stops at the NL_BLOCKED entry; for_each_entry still sees below it.
  std::vector<SeptState> leaves;
  td.for_each_entry([&](const TdxModule::EntryView& e) {
    if (e.tdx_level == 0) leaves.push_back(e.state);
  });
  EXPECT_EQ(leaves, (std::vector<SeptState>{SeptState::Blocked, SeptState::PendingBlocked}));
}

TEST_F(BlockTest, AlreadyBlockedIsANonErrorStatus) {
  map_accepted(kGpa);
  ASSERT_EQ(td.tdh_mem_range_block(kGpa, 0).status, TDX_SUCCESS);
  Ret r;
  const Status s = unchanged([&] { return r = td.tdh_mem_range_block(kGpa, 0); });
  EXPECT_EQ(s, rcx(TDX_GPA_RANGE_ALREADY_BLOCKED));
  EXPECT_FALSE(is_error(s));
  EXPECT_EQ(r.level_state, 0x01u << 8);
}

TEST_F(BlockTest, FreeEntryIsStateIncorrect) {
  link(kGpa);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_range_block(kGpa, 0); }), rcx(TDX_EPT_ENTRY_STATE_INCORRECT));
}

TEST_F(BlockTest, UnblockNeedsTracking) {
  map_accepted(kGpa);
  ASSERT_EQ(td.tdh_mem_range_block(kGpa, 0).status, TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_range_unblock(kGpa, 0); }),
            with_operand(TDX_TLB_TRACKING_NOT_DONE, Operand::SEPT_TREE));
  ASSERT_EQ(td.tdh_mem_track(), TDX_SUCCESS);
  EXPECT_EQ(td.tdh_mem_range_unblock(kGpa, 0).status, TDX_SUCCESS);
  EXPECT_EQ(state(kGpa, 0), SeptState::Mapped);
}

TEST_F(BlockTest, UnblockRestoresPendingAndNonLeaf) {
  aug(kGpa);
  ASSERT_EQ(td.tdh_mem_range_block(kGpa, 0).status, TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mem_range_block(align_down(kGpa, 2), 2).status, TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mem_track(), TDX_SUCCESS);
  // The PDPT entry must be unblocked first: the walk to the 4K entry stops at it.
  EXPECT_EQ(td.tdh_mem_range_unblock(kGpa, 0).status, rcx(TDX_EPT_WALK_FAILED));
  ASSERT_EQ(td.tdh_mem_range_unblock(align_down(kGpa, 2), 2).status, TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mem_range_unblock(kGpa, 0).status, TDX_SUCCESS);
  EXPECT_EQ(state(align_down(kGpa, 2), 2), SeptState::NlMapped);
  EXPECT_EQ(state(kGpa, 0), SeptState::Pending);
}

TEST_F(BlockTest, UnblockOfUnblockedEntry) {
  map_accepted(kGpa);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_range_unblock(kGpa, 0); }), rcx(TDX_EPT_ENTRY_STATE_INCORRECT));
}

using BuildBlockTest = TdxTest;

TEST_F(BuildBlockTest, UnblockNeedsNoTrackingBeforeFinalize) {
  build_td();
  link(kGpa);
  ASSERT_EQ(td.tdh_mem_page_add(kGpa, 0, page(PageOwner::GuestPrivate), page(PageOwner::HostSource)).status,
            TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mem_range_block(kGpa, 0).status, TDX_SUCCESS);
  EXPECT_EQ(td.tdh_mem_range_unblock(kGpa, 0).status, TDX_SUCCESS);
  EXPECT_EQ(state(kGpa, 0), SeptState::Mapped);
}

// ---- TRACK and the epoch refcounts --------------------------------------------------

using TrackTest = BlockTest;

TEST_F(TrackTest, AdvancesTheEpoch) {
  EXPECT_EQ(td.td_epoch(), 1u);
  ASSERT_EQ(td.tdh_mem_track(), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mem_track(), TDX_SUCCESS);
  EXPECT_EQ(td.td_epoch(), 3u);
}

TEST_F(TrackTest, VcpuFromPreviousEpochBlocksTheNextTrack) {
  ASSERT_EQ(td.tdh_vp_enter(0), TDX_SUCCESS);  // enters in epoch 1
  ASSERT_EQ(td.tdh_mem_track(), TDX_SUCCESS);  // epoch 2; vCPU still counted in epoch 1
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_track(); }), TDX_PREVIOUS_TLB_EPOCH_BUSY);
  EXPECT_EQ(td.td_epoch(), 2u);
  td.td_exit(0);
  EXPECT_EQ(td.tdh_mem_track(), TDX_SUCCESS);
  EXPECT_EQ(td.td_epoch(), 3u);
}

TEST_F(TrackTest, RemoveWaitsForVcpusThatEnteredBeforeTheTrack) {
  map_accepted(kGpa);
  ASSERT_EQ(td.tdh_vp_enter(0), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mem_range_block(kGpa, 0).status, TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mem_track(), TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_remove(kGpa, 0); }), rcx(TDX_TLB_TRACKING_NOT_DONE));
  td.td_exit(0);  // the kick
  EXPECT_EQ(td.tdh_mem_page_remove(kGpa, 0).status, TDX_SUCCESS);
}

TEST_F(TrackTest, VcpuEnteringAfterTheTrackDoesNotMatter) {
  map_accepted(kGpa);
  block_and_track(kGpa, 0);
  ASSERT_EQ(td.tdh_vp_enter(0), TDX_SUCCESS);  // enters in the new epoch, with a fresh TLB
  EXPECT_EQ(td.tdh_mem_page_remove(kGpa, 0).status, TDX_SUCCESS);
  td.td_exit(0);
}

TEST_F(TrackTest, RemoveWithoutTrack) {
  map_accepted(kGpa);
  ASSERT_EQ(td.tdh_mem_range_block(kGpa, 0).status, TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_remove(kGpa, 0); }), rcx(TDX_TLB_TRACKING_NOT_DONE));
}

TEST_F(TrackTest, BlockAfterTrackIsNotTracked) {
  map_accepted(kGpa);
  ASSERT_EQ(td.tdh_mem_track(), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mem_range_block(kGpa, 0).status, TDX_SUCCESS);
  EXPECT_EQ(td.tdh_mem_page_remove(kGpa, 0).status, rcx(TDX_TLB_TRACKING_NOT_DONE));
}

TEST_F(TrackTest, VpEnterPreconditions) {
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_enter(5); }), rcx(TDX_PAGE_METADATA_INCORRECT));
  ASSERT_EQ(td.tdh_vp_enter(0), TDX_SUCCESS);
  EXPECT_TRUE(td.vcpu_in_guest(0));
  EXPECT_EQ(td.tdh_vp_enter(0), rcx(TDX_OPERAND_BUSY));
  td.td_exit(0);
  EXPECT_FALSE(td.vcpu_in_guest(0));
}

using VpEnterBuildTest = TdxTest;

TEST_F(VpEnterBuildTest, NotBeforeFinalize) {
  build_td();
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_enter(0); }), TDX_OP_STATE_INCORRECT);
  EXPECT_FALSE(td.vcpu_in_guest(0));
}

TEST_F(VpEnterBuildTest, VcpuNotInitialized) {
  build_td();
  ASSERT_EQ(td.tdh_vp_create(1, page()), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mr_finalize(), TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_enter(1); }), with_operand(TDX_OP_STATE_INCORRECT, Operand::TDVPR));
}

// ---- PAGE.REMOVE -------------------------------------------------------------------

using RemoveTest = BlockTest;

TEST_F(RemoveTest, BlockTrackRemoveFreesThePage) {
  const Pfn hpa = map_accepted(kGpa);
  const uint64_t before = td.chldcnt();
  block_and_track(kGpa, 0);
  ASSERT_EQ(td.tdh_mem_page_remove(kGpa, 0).status, TDX_SUCCESS);
  EXPECT_EQ(state(kGpa, 0), SeptState::Free);
  EXPECT_EQ(td.pamt_type(hpa), PamtType::Nda);
  EXPECT_EQ(td.chldcnt(), before - 1);
  EXPECT_EQ(td.tdh_phymem_page_wbinvd(hpa, kHkid), TDX_SUCCESS);
}

TEST_F(RemoveTest, PendingBlockedTwoM) {
  const Pfn hpa = aug(k2M, 1);
  const uint64_t before = td.chldcnt();
  block_and_track(k2M, 1);
  ASSERT_EQ(td.tdh_mem_page_remove(k2M, 1).status, TDX_SUCCESS);
  EXPECT_EQ(td.chldcnt(), before - 512);
  for (uint64_t i = 0; i < 512; ++i) EXPECT_EQ(td.pamt_type(hpa + i), PamtType::Nda);
}

TEST_F(RemoveTest, NotBlockedWhileRunnable) {
  map_accepted(kGpa);
  Ret r;
  EXPECT_EQ(unchanged([&] { return r = td.tdh_mem_page_remove(kGpa, 0); }), rcx(TDX_GPA_RANGE_NOT_BLOCKED));
  EXPECT_EQ(r.level_state, 0x04u << 8);
}

TEST_F(RemoveTest, NonLeafOrFreeIsStateIncorrect) {
  map_accepted(kGpa);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_remove(align_down(kGpa, 1), 1); }),
            rcx(TDX_EPT_ENTRY_STATE_INCORRECT));
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_remove(kGpa + k4K, 0); }), rcx(TDX_EPT_ENTRY_STATE_INCORRECT));
}

TEST_F(BuildBlockTest, RemoveNeedsNoBlockBeforeFinalize) {
  build_td();
  link(kGpa);
  const Pfn hpa = page(PageOwner::GuestPrivate);
  ASSERT_EQ(td.tdh_mem_page_add(kGpa, 0, hpa, page(PageOwner::HostSource)).status, TDX_SUCCESS);
  EXPECT_EQ(td.tdh_mem_page_remove(kGpa, 0).status, TDX_SUCCESS);
  EXPECT_EQ(td.pamt_type(hpa), PamtType::Nda);
}

// ---- SEPT.REMOVE ---------------------------------------------------------------------

using SeptRemoveTest = BlockTest;

TEST_F(SeptRemoveTest, EmptyTableAfterBlockAndTrack) {
  link(kGpa);
  const Pfn pt = td.read_entry(kGpa, 1).pfn;
  const uint64_t before = td.chldcnt();
  block_and_track(align_down(kGpa, 1), 1);
  ASSERT_EQ(td.tdh_mem_sept_remove(align_down(kGpa, 1), 1).status, TDX_SUCCESS);
  EXPECT_EQ(state(kGpa, 1), SeptState::Free);
  EXPECT_EQ(td.pamt_type(pt), PamtType::Nda);
  EXPECT_EQ(td.chldcnt(), before - 1);
}

TEST_F(SeptRemoveTest, ChildrenNotFree) {
  map_accepted(kGpa);
  block_and_track(align_down(kGpa, 1), 1);
  Ret r;
  EXPECT_EQ(unchanged([&] { return r = td.tdh_mem_sept_remove(align_down(kGpa, 1), 1); }),
            rcx(TDX_EPT_PAGE_NOT_FREE));
  EXPECT_EQ(r.level_state, 1u | (0x81u << 8));
}

TEST_F(SeptRemoveTest, NotBlockedWhileRunnable) {
  link(kGpa);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_sept_remove(align_down(kGpa, 1), 1); }),
            rcx(TDX_GPA_RANGE_NOT_BLOCKED));
}

TEST_F(SeptRemoveTest, NotTracked) {
  link(kGpa);
  ASSERT_EQ(td.tdh_mem_range_block(align_down(kGpa, 1), 1).status, TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_sept_remove(align_down(kGpa, 1), 1); }),
            rcx(TDX_TLB_TRACKING_NOT_DONE));
}

TEST_F(SeptRemoveTest, LeafOrFreeIsStateIncorrect) {
  aug(k2M, 1);
  link(2 * k2M, 1);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_sept_remove(k2M, 1); }), rcx(TDX_EPT_ENTRY_STATE_INCORRECT));
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_sept_remove(2 * k2M, 1); }), rcx(TDX_EPT_ENTRY_STATE_INCORRECT));
}

TEST_F(BuildBlockTest, SeptRemoveBottomUpBeforeFinalize) {
  build_td();
  link(kGpa);
  const uint64_t before_tables = td.chldcnt();
  for (int l = 1; l <= 3; ++l) {
    ASSERT_EQ(td.tdh_mem_sept_remove(align_down(kGpa, l), l).status, TDX_SUCCESS) << l;
  }
  EXPECT_EQ(td.chldcnt(), before_tables - 3);
  for (Pfn p : sept_pages) EXPECT_EQ(td.pamt_type(p), PamtType::Nda);
  int entries = 0;
  td.for_each_entry([&](const TdxModule::EntryView&) { ++entries; });
  EXPECT_EQ(entries, 0);
}

TEST_F(BuildBlockTest, SeptRemoveParentWithChildTable) {
  build_td();
  link(kGpa);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_sept_remove(align_down(kGpa, 2), 2); }),
            rcx(TDX_EPT_PAGE_NOT_FREE));
}

}  // namespace
}  // namespace mirrormmu::tdx::test
