// SPDX-License-Identifier: MIT
// HKID release (VP.FLUSH, VPFLUSHDONE, CACHE.WB, KEY.FREEID), RECLAIM and
// WBINVD.
#include "tdx/tdx_fixture.h"

namespace mirrormmu::tdx::test {
namespace {

constexpr uint64_t kGpa = 0x3000000;

class TeardownTest : public TdxTest {
 protected:
  void SetUp() override { runnable_td(); }
};

TEST_F(TeardownTest, ReleaseHkidWalksTheLifecycle) {
  ASSERT_EQ(td.tdh_vp_flush(0), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mng_vpflushdone(), TDX_SUCCESS);
  EXPECT_EQ(td.lifecycle(), Lifecycle::Blocked);
  EXPECT_TRUE(td.hkid_assigned());
  ASSERT_EQ(td.tdh_phymem_cache_wb(false), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mng_key_freeid(), TDX_SUCCESS);
  EXPECT_EQ(td.lifecycle(), Lifecycle::Teardown);
  EXPECT_FALSE(td.hkid_assigned());
}

TEST_F(TeardownTest, VpFlushUnknownVcpu) {
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_flush(3); }), rcx(TDX_PAGE_METADATA_INCORRECT));
}

TEST_F(TeardownTest, VpFlushWhileInGuest) {
  ASSERT_EQ(td.tdh_vp_enter(0), TDX_SUCCESS);
  EXPECT_EQ(td.tdh_vp_flush(0), rcx(TDX_OPERAND_BUSY));
  // The running vCPU holds the TDR shared until it exits: VPFLUSHDONE,
  // which takes it exclusively, cannot even look.
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_vpflushdone(); }), rcx(TDX_OPERAND_BUSY));
  td.td_exit(0);
  // Out of the guest but still associated: VPFLUSHDONE refuses.
  EXPECT_EQ(td.tdh_mng_vpflushdone(), TDX_FLUSHVP_NOT_DONE);
}

TEST_F(TeardownTest, VpFlushTwiceIsNotAssociated) {
  ASSERT_EQ(td.tdh_vp_flush(0), TDX_SUCCESS);
  EXPECT_EQ(td.tdh_vp_flush(0), TDX_VCPU_NOT_ASSOCIATED);
}

TEST_F(TeardownTest, VpFlushAfterFlushDone) {
  ASSERT_EQ(td.tdh_vp_flush(0), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mng_vpflushdone(), TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_flush(0); }), TDX_TD_KEYS_NOT_CONFIGURED);
}

TEST_F(TeardownTest, FlushDoneNeedsEveryVcpuFlushed) {
  add_vcpu(1);  // VP.CREATE is allowed in RUNNABLE too
  ASSERT_EQ(td.tdh_vp_flush(0), TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_vpflushdone(); }), TDX_FLUSHVP_NOT_DONE);
  ASSERT_EQ(td.tdh_vp_flush(1), TDX_SUCCESS);
  EXPECT_EQ(td.tdh_mng_vpflushdone(), TDX_SUCCESS);
}

TEST_F(TeardownTest, EnteringAgainAfterFlushNeedsAnotherFlush) {
  ASSERT_EQ(td.tdh_vp_flush(0), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_vp_enter(0), TDX_SUCCESS);
  td.td_exit(0);
  EXPECT_EQ(td.tdh_mng_vpflushdone(), TDX_FLUSHVP_NOT_DONE);
}

TEST_F(TeardownTest, FlushDoneTwice) {
  ASSERT_EQ(td.tdh_vp_flush(0), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mng_vpflushdone(), TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_vpflushdone(); }), TDX_LIFECYCLE_STATE_INCORRECT);
}

TEST_F(TeardownTest, BlockedTdRefusesEntryAndMemCalls) {
  const Pfn hpa = map_accepted(kGpa);
  ASSERT_EQ(td.tdh_vp_flush(0), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mng_vpflushdone(), TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_enter(0); }), TDX_TD_KEYS_NOT_CONFIGURED);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_track(); }), TDX_TD_KEYS_NOT_CONFIGURED);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_range_block(kGpa, 0); }), TDX_TD_KEYS_NOT_CONFIGURED);
  EXPECT_EQ(td.pamt_type(hpa), PamtType::Reg);
}

TEST_F(TeardownTest, CacheWbBeforeBlocked) {
  EXPECT_EQ(unchanged([&] { return td.tdh_phymem_cache_wb(false); }), TDX_NO_HKID_READY_TO_WBCACHE);
}

TEST_F(TeardownTest, FreeIdNeedsCacheWb) {
  ASSERT_EQ(td.tdh_vp_flush(0), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mng_vpflushdone(), TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_key_freeid(); }), TDX_WBCACHE_NOT_COMPLETE);
}

TEST_F(TeardownTest, CacheWbBeforeBlockedDoesNotCount) {
  EXPECT_EQ(td.tdh_phymem_cache_wb(false), TDX_NO_HKID_READY_TO_WBCACHE);
  ASSERT_EQ(td.tdh_vp_flush(0), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mng_vpflushdone(), TDX_SUCCESS);
  EXPECT_EQ(td.tdh_mng_key_freeid(), TDX_WBCACHE_NOT_COMPLETE);
}

TEST_F(TeardownTest, FreeIdBeforeBlocked) {
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_key_freeid(); }), TDX_LIFECYCLE_STATE_INCORRECT);
  EXPECT_TRUE(td.hkid_assigned());
}

// ---- RECLAIM ----------------------------------------------------------------------

TEST_F(TeardownTest, ReclaimBeforeTeardown) {
  link(kGpa);
  EXPECT_EQ(unchanged([&] { return td.tdh_phymem_page_reclaim(sept_pages[0]); }), TDX_LIFECYCLE_STATE_INCORRECT);
  ASSERT_EQ(td.tdh_vp_flush(0), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mng_vpflushdone(), TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_phymem_page_reclaim(sept_pages[0]); }), TDX_LIFECYCLE_STATE_INCORRECT);
}

TEST_F(TeardownTest, ReclaimOutOfRange) {
  release_hkid();
  EXPECT_EQ(unchanged([&] { return td.tdh_phymem_page_reclaim(Pfn{pool.size()}); }), rcx(TDX_OPERAND_INVALID));
}

TEST_F(TeardownTest, ReclaimFreePage) {
  release_hkid();
  const Pfn free_frame = page(PageOwner::GuestPrivate);
  EXPECT_EQ(unchanged([&] { return td.tdh_phymem_page_reclaim(free_frame); }), rcx(TDX_PAGE_METADATA_INCORRECT));
}

TEST_F(TeardownTest, ReclaimTdrFirst) {
  release_hkid();
  EXPECT_EQ(unchanged([&] { return td.tdh_phymem_page_reclaim(tdr); }), TDX_TD_ASSOCIATED_PAGES_EXIST);
  EXPECT_EQ(td.pamt_type(tdr), PamtType::Tdr);
}

TEST_F(TeardownTest, ReclaimInsideTwoMPage) {
  const Pfn big = aug(k2M, 1);
  release_hkid();
  EXPECT_EQ(unchanged([&] { return td.tdh_phymem_page_reclaim(big + 3); }), rcx(TDX_PAGE_METADATA_INCORRECT));
  const uint64_t before = td.chldcnt();
  ASSERT_EQ(td.tdh_phymem_page_reclaim(big), TDX_SUCCESS);
  EXPECT_EQ(td.chldcnt(), before - 512);
  EXPECT_EQ(td.pamt_type(big + 511), PamtType::Nda);
}

TEST_F(TeardownTest, ReclaimTwice) {
  link(kGpa);
  release_hkid();
  ASSERT_EQ(td.tdh_phymem_page_reclaim(sept_pages.back()), TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_phymem_page_reclaim(sept_pages.back()); }),
            rcx(TDX_PAGE_METADATA_INCORRECT));
}

TEST_F(TeardownTest, ReclaimedTableIsNoLongerReported) {
  map_accepted(kGpa);
  release_hkid();
  const Pfn pt = td.read_entry(kGpa, 1).pfn;
  ASSERT_EQ(td.tdh_phymem_page_reclaim(pt), TDX_SUCCESS);
  bool saw_leaf = false;
  td.for_each_entry([&](const TdxModule::EntryView& e) { saw_leaf = saw_leaf || e.tdx_level == 0; });
  EXPECT_FALSE(saw_leaf);
  EXPECT_EQ(state(kGpa, 0), SeptState::Free);
  // The root goes with its TDCS page.
  ASSERT_EQ(td.tdh_phymem_page_reclaim(tdcs[0]), TDX_SUCCESS);
  int entries = 0;
  td.for_each_entry([&](const TdxModule::EntryView&) { ++entries; });
  EXPECT_EQ(entries, 0);
}

// ---- WBINVD ---------------------------------------------------------------------------

TEST_F(TeardownTest, WbinvdNeedsAFreePage) {
  const Pfn hpa = map_accepted(kGpa);
  EXPECT_EQ(unchanged([&] { return td.tdh_phymem_page_wbinvd(hpa, kHkid); }), rcx(TDX_PAGE_METADATA_INCORRECT));
  EXPECT_EQ(unchanged([&] { return td.tdh_phymem_page_wbinvd(tdr, 0); }), rcx(TDX_PAGE_METADATA_INCORRECT));
  EXPECT_EQ(unchanged([&] { return td.tdh_phymem_page_wbinvd(Pfn{pool.size()}, kHkid); }),
            rcx(TDX_OPERAND_INVALID));
}

}  // namespace
}  // namespace mirrormmu::tdx::test
