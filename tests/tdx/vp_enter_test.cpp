// SPDX-License-Identifier: MIT
// TDH.VP.ENTER as the 1.5 module has it: zero-step mitigation (six EPT
// violations at one RIP count, the seventh arms the filter, ACCEPT exits do
// not count, an armed filter re-walks the logged GPAs and can exit without
// entering), the TDR held shared while the vCPU is in the guest, and a fatal
// TD refusing entry and S-EPT changes while its teardown still works.
#include "tdx/tdx_fixture.h"

namespace mirrormmu::tdx::test {
namespace {

constexpr Status kEptViolationExit = TDX_EXIT_EPT_VIOLATION;

class VpEnterTest : public TdxTest {
 protected:
  void SetUp() override { runnable_td(); }
  static constexpr uint64_t kGpa = 0x7654000;

  void violations(int n, uint64_t gpa, uint64_t rip) {
    for (int i = 0; i < n; i++) td.vcpu_ept_violation(0, gpa, rip);
  }
};

TEST_F(VpEnterTest, SixViolationsAtOneRipOnlyCountTheSeventhArms) {
  violations(6, kGpa, 1);
  EXPECT_FALSE(td.zero_step_active(0));
  violations(1, kGpa, 1);
  EXPECT_TRUE(td.zero_step_active(0));
}

TEST_F(VpEnterTest, AnotherRipStartsTheCountAgain) {
  violations(6, kGpa, 1);
  violations(1, kGpa, 2);  // the guest moved on: this is the first at RIP 2
  EXPECT_FALSE(td.zero_step_active(0));
  violations(6, kGpa, 2);
  EXPECT_TRUE(td.zero_step_active(0));
  td.vcpu_progress(0);
  EXPECT_FALSE(td.zero_step_active(0));
}

TEST_F(VpEnterTest, AnArmedFilterExitsOnALoggedGpaThatStillFaults) {
  violations(7, kGpa, 1);
  const uint64_t epoch_before = td.td_epoch();
  uint64_t gpa = 0;
  EXPECT_EQ(td.tdh_vp_enter(0, &gpa), kEptViolationExit);
  EXPECT_EQ(gpa, kGpa);
  // Not entered: no epoch reference left behind, TRACK advances at once.
  EXPECT_FALSE(td.vcpu_in_guest(0));
  EXPECT_EQ(td.tdh_mem_track(), TDX_SUCCESS);
  EXPECT_EQ(td.td_epoch(), epoch_before + 1);
  // Still armed: the host maps the GPA, then the filter lets the vCPU in.
  EXPECT_EQ(td.tdh_vp_enter(0, &gpa), kEptViolationExit);
  link(kGpa);
  aug(kGpa);
  EXPECT_EQ(td.tdh_vp_enter(0, &gpa), TDX_SUCCESS);
  EXPECT_TRUE(td.vcpu_in_guest(0));
}

TEST_F(VpEnterTest, AcceptExitsDoNotFeedTheFilter) {
  // A 2M PENDING leaf accepted at 4K exits to the host for a split; the
  // module counts only hardware EPT violations, which the host reports.
  link(k2M, 1);
  aug(k2M, 1);
  ASSERT_EQ(td.tdh_vp_enter(0), TDX_SUCCESS);
  for (int i = 0; i < 10; i++)
    EXPECT_EQ(td.tdg_mem_page_accept(0, k2M, 0).outcome, AcceptResult::Outcome::EptViolation);
  EXPECT_FALSE(td.zero_step_active(0));
}

TEST_F(VpEnterTest, TheRunningVcpuHoldsTheTdrShared) {
  ASSERT_EQ(td.tdh_vp_enter(0), TDX_SUCCESS);
  // Shared holders still get in; an exclusive one does not.
  link(kGpa);
  EXPECT_EQ(td.tdh_mem_page_aug(kGpa, 0, page(PageOwner::GuestPrivate)).status, TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_vpflushdone(); }), rcx(TDX_OPERAND_BUSY));
  td.td_exit(0);
  ASSERT_EQ(td.tdh_vp_flush(0), TDX_SUCCESS);
  EXPECT_EQ(td.tdh_mng_vpflushdone(), TDX_SUCCESS);
}

TEST_F(VpEnterTest, AFatalTdRefusesEntryAndSeptChangesButTearsDown) {
  link(kGpa);
  const Pfn hpa = aug(kGpa);
  td.set_td_fatal();
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_enter(0); }), TDX_TD_FATAL);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_range_block(kGpa, 0); }), TDX_TD_FATAL);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_aug(kGpa + k4K, 0, page(PageOwner::GuestPrivate)); }),
            TDX_TD_FATAL);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_track(); }), TDX_TD_FATAL);
  // The HKID release and the reclaims do not look at TDR.FATAL.
  release_hkid();
  EXPECT_EQ(td.tdh_phymem_page_reclaim(hpa), TDX_SUCCESS);
}

}  // namespace
}  // namespace mirrormmu::tdx::test
