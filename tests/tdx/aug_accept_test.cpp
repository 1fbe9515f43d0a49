// SPDX-License-Identifier: MIT
// TDH.MEM.PAGE.AUG and the guest's TDG.MEM.PAGE.ACCEPT.
#include "tdx/tdx_fixture.h"

namespace mirrormmu::tdx::test {
namespace {

using Outcome = AcceptResult::Outcome;

class AugTest : public TdxTest {
 protected:
  void SetUp() override { runnable_td(); }
  static constexpr uint64_t kGpa = 0x7654000;
};

TEST_F(AugTest, FourKBecomesPending) {
  link(kGpa);
  const Pfn hpa = page(PageOwner::GuestPrivate);
  const uint64_t before = td.chldcnt();
  ASSERT_EQ(td.tdh_mem_page_aug(kGpa, 0, hpa).status, TDX_SUCCESS);
  EXPECT_EQ(state(kGpa, 0), SeptState::Pending);
  EXPECT_EQ(td.read_entry(kGpa, 0).pfn, hpa);
  EXPECT_EQ(td.pamt_type(hpa), PamtType::Reg);
  EXPECT_EQ(td.chldcnt(), before + 1);
}

TEST_F(AugTest, TwoMBecomesPendingLeaf) {
  link(k2M, 1);
  const Pfn hpa = pool.alloc_run_2m(PageOwner::GuestPrivate);
  const uint64_t before = td.chldcnt();
  ASSERT_EQ(td.tdh_mem_page_aug(k2M, 1, hpa).status, TDX_SUCCESS);
  EXPECT_EQ(state(k2M, 1), SeptState::Pending);
  for (uint64_t i = 0; i < 512; ++i) EXPECT_EQ(td.pamt_type(hpa + i), PamtType::Reg) << i;
  EXPECT_EQ(td.chldcnt(), before + 512);
}

using AugBuildTest = TdxTest;

TEST_F(AugBuildTest, AllowedBeforeFinalize) {
  build_td();
  link(0x5000);
  ASSERT_EQ(td.tdh_mem_page_aug(0x5000, 0, page(PageOwner::GuestPrivate)).status, TDX_SUCCESS);
  EXPECT_EQ(state(0x5000, 0), SeptState::Pending);
  EXPECT_EQ(td.op_state(), OpState::Initialized);
}

TEST_F(AugTest, OneGigIsNotAllowed) {
  link(0, 2);
  const Pfn hpa = page(PageOwner::GuestPrivate);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_aug(0, 2, hpa); }), rcx(TDX_OPERAND_INVALID));
}

TEST_F(AugTest, EntryNotFree) {
  aug(kGpa);
  const Pfn hpa = page(PageOwner::GuestPrivate);
  Ret r;
  EXPECT_EQ(unchanged([&] { return r = td.tdh_mem_page_aug(kGpa, 0, hpa); }), rcx(TDX_EPT_ENTRY_STATE_INCORRECT));
  EXPECT_EQ(r.level_state, 0x02u << 8);
}

TEST_F(AugTest, TwoMOverPageTableIsStateIncorrect) {
  link(0, 0);  // the PD entry for [0, 2M) points at a PT
  const Pfn hpa = pool.alloc_run_2m(PageOwner::GuestPrivate);
  Ret r;
  EXPECT_EQ(unchanged([&] { return r = td.tdh_mem_page_aug(0, 1, hpa); }), rcx(TDX_EPT_ENTRY_STATE_INCORRECT));
  EXPECT_EQ(r.level_state, 1u | (0x84u << 8));
}

TEST_F(AugTest, HpaMisalignedForTwoM) {
  link(k2M, 1);
  const Pfn run = pool.alloc_run_2m(PageOwner::GuestPrivate);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_aug(k2M, 1, run + 1); }), r8(TDX_OPERAND_INVALID));
}

TEST_F(AugTest, TwoMRangeNotAllFree) {
  link(k2M, 1);
  link(4 * k2M, 0);
  const Pfn run = pool.alloc_run_2m(PageOwner::GuestPrivate);
  // One frame in the middle of the run is already a TD page.
  ASSERT_EQ(td.tdh_mem_page_aug(4 * k2M, 0, run + 100).status, TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_aug(k2M, 1, run); }), r8(TDX_PAGE_METADATA_INCORRECT));
  EXPECT_EQ(td.pamt_type(run), PamtType::Nda);
}

TEST_F(AugTest, FourKPageNotFree) {
  link(kGpa);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_aug(kGpa, 0, tdr); }), r8(TDX_PAGE_METADATA_INCORRECT));
}

TEST_F(AugTest, HpaOutOfRange) {
  link(kGpa);
  link(k2M, 1);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_aug(kGpa, 0, Pfn{pool.size()}); }),
            r8(TDX_OPERAND_ADDR_RANGE_ERROR));
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_aug(k2M, 1, Pfn{pool.size()}); }),
            r8(TDX_OPERAND_ADDR_RANGE_ERROR));
}

TEST_F(AugTest, FourKInsideTwoMLeafFailsWalk) {
  aug(k2M, 1);
  const Pfn hpa = page(PageOwner::GuestPrivate);
  Ret r;
  EXPECT_EQ(unchanged([&] { return r = td.tdh_mem_page_aug(k2M + k4K, 0, hpa); }), rcx(TDX_EPT_WALK_FAILED));
  EXPECT_EQ(r.level_state, 1u | (0x02u << 8));
}

// ---- ACCEPT --------------------------------------------------------------------

class AcceptTest : public AugTest {
 protected:
  void SetUp() override {
    AugTest::SetUp();
    ASSERT_EQ(td.tdh_vp_enter(0), TDX_SUCCESS);
  }
  AcceptResult accept(uint64_t gpa, int level) { return td.tdg_mem_page_accept(0, gpa, level); }
};

TEST_F(AcceptTest, PendingBecomesMapped) {
  aug(kGpa);
  const AcceptResult r = accept(kGpa, 0);
  EXPECT_EQ(r.outcome, Outcome::Accepted);
  EXPECT_EQ(state(kGpa, 0), SeptState::Mapped);
}

TEST_F(AcceptTest, TwoMPendingBecomesMapped) {
  aug(k2M, 1);
  EXPECT_EQ(accept(k2M, 1).outcome, Outcome::Accepted);
  EXPECT_EQ(state(k2M, 1), SeptState::Mapped);
}

TEST_F(AcceptTest, AlreadyAccepted) {
  aug(kGpa);
  ASSERT_EQ(accept(kGpa, 0).outcome, Outcome::Accepted);
  const AcceptResult r = accept(kGpa, 0);
  EXPECT_EQ(r.outcome, Outcome::Status);
  EXPECT_EQ(r.status, TDX_PAGE_ALREADY_ACCEPTED | 0);
}

TEST_F(AcceptTest, FourKInsideMappedTwoMIsAlreadyAccepted) {
  aug(k2M, 1);
  ASSERT_EQ(accept(k2M, 1).outcome, Outcome::Accepted);
  const AcceptResult r = accept(k2M + 5 * k4K, 0);
  EXPECT_EQ(r.outcome, Outcome::Status);
  EXPECT_EQ(r.status, TDX_PAGE_ALREADY_ACCEPTED | 1);
}

TEST_F(AcceptTest, TwoMOverPageTableIsSizeMismatch) {
  aug(kGpa);
  const Snapshot before = snapshot();
  const AcceptResult r = accept(align_down(kGpa, 1), 1);
  EXPECT_EQ(r.outcome, Outcome::Status);
  EXPECT_EQ(r.status, TDX_PAGE_SIZE_MISMATCH | 1);
  EXPECT_EQ(snapshot(), before);
}

TEST_F(AcceptTest, FreeEntryExitsToHost) {
  link(kGpa);
  const AcceptResult r = accept(kGpa, 0);
  EXPECT_EQ(r.outcome, Outcome::EptViolation);
  EXPECT_EQ(r.walk_level, 0);
  EXPECT_EQ(r.state, SeptState::Free);
}

TEST_F(AcceptTest, MissingTablesExitAtTheLevelReached) {
  link(kGpa, 2);  // PML4 and PDPT tables; the PD entry is FREE
  const AcceptResult r = accept(kGpa, 0);
  EXPECT_EQ(r.outcome, Outcome::EptViolation);
  EXPECT_EQ(r.walk_level, 2);
  EXPECT_EQ(r.state, SeptState::Free);
}

TEST_F(AcceptTest, FourKInsidePendingTwoMNeedsDemote) {
  aug(k2M, 1);
  const Snapshot before = snapshot();
  const AcceptResult r = accept(k2M + k4K, 0);
  EXPECT_EQ(r.outcome, Outcome::EptViolation);
  EXPECT_EQ(r.walk_level, 1);
  EXPECT_EQ(r.state, SeptState::Pending);
  EXPECT_EQ(snapshot(), before);
}

TEST_F(AcceptTest, BlockedPendingExitsToHost) {
  aug(kGpa);
  ASSERT_EQ(td.tdh_mem_range_block(kGpa, 0).status, TDX_SUCCESS);
  const AcceptResult r = accept(kGpa, 0);
  EXPECT_EQ(r.outcome, Outcome::EptViolation);
  EXPECT_EQ(r.state, SeptState::PendingBlocked);
  EXPECT_EQ(state(kGpa, 0), SeptState::PendingBlocked);
}

TEST_F(AcceptTest, VcpuNotInGuest) {
  aug(kGpa);
  td.td_exit(0);
  const AcceptResult r = accept(kGpa, 0);
  EXPECT_EQ(r.outcome, Outcome::Status);
  EXPECT_EQ(r.status, TDX_VCPU_NOT_ASSOCIATED);
  EXPECT_EQ(state(kGpa, 0), SeptState::Pending);
}

TEST_F(AcceptTest, BadPageInfo) {
  aug(kGpa);
  EXPECT_EQ(accept(0, 2).status, rcx(TDX_OPERAND_INVALID));
  EXPECT_EQ(accept(kGpa + 0x800, 0).status, rcx(TDX_OPERAND_INVALID));
  EXPECT_EQ(accept(kGpa | (1ull << 47), 0).status, rcx(TDX_OPERAND_INVALID));
  EXPECT_EQ(state(kGpa, 0), SeptState::Pending);
}

}  // namespace
}  // namespace mirrormmu::tdx::test
