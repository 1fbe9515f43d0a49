// SPDX-License-Identifier: MIT
// TD and vCPU build calls: MNG.CREATE/KEY.CONFIG/ADDCX/INIT, VP.CREATE/
// ADDCX/INIT, MR.EXTEND, MR.FINALIZE — happy path and every precondition.
#include "tdx/tdx_fixture.h"

namespace mirrormmu::tdx::test {
namespace {

using BuildTest = TdxTest;

TEST_F(BuildTest, CreateKeyConfigAddcxInit) {
  EXPECT_FALSE(td.hkid_assigned());
  create_td();
  EXPECT_EQ(td.lifecycle(), Lifecycle::KeysConfigured);
  EXPECT_EQ(td.op_state(), OpState::Initialized);
  EXPECT_EQ(td.td_epoch(), 1u);
  EXPECT_TRUE(td.hkid_assigned());
  EXPECT_EQ(td.hkid(), kHkid);
  EXPECT_EQ(td.tdr(), tdr);
  EXPECT_EQ(td.pamt_type(tdr), PamtType::Tdr);
  for (Pfn p : tdcs) EXPECT_EQ(td.pamt_type(p), PamtType::Tdcx);
  EXPECT_EQ(td.chldcnt(), tdcs.size());
}

TEST_F(BuildTest, VcpuPagesAreTdChildren) {
  create_td();
  add_vcpu(0);
  add_vcpu(3);
  EXPECT_EQ(td.pamt_type(vcpu_pages[0]), PamtType::Tdvpr);
  EXPECT_EQ(td.pamt_type(vcpu_pages[1]), PamtType::Tdcx);
  EXPECT_EQ(td.chldcnt(), tdcs.size() + vcpu_pages.size());
}

TEST_F(BuildTest, CreateTdrOutOfRange) {
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_create(Pfn{pool.size()}, kHkid); }),
            rcx(TDX_OPERAND_ADDR_RANGE_ERROR));
  EXPECT_EQ(td.lifecycle(), Lifecycle::None);
}

TEST_F(BuildTest, CreateTdrNotFree) {
  create_td();
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_create(tdcs[1], kHkid); }), rcx(TDX_PAGE_METADATA_INCORRECT));
}

TEST_F(BuildTest, CreateHkidZero) {
  const Pfn p = page();
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_create(p, 0); }), with_operand(TDX_OPERAND_INVALID, Operand::RDX));
  EXPECT_FALSE(td.hkid_assigned());
}

TEST_F(BuildTest, CreateSecondTd) {
  create_td();
  const Pfn p = page();
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_create(p, kHkid + 1); }), TDX_LIFECYCLE_STATE_INCORRECT);
  EXPECT_EQ(td.tdr(), tdr);
}

TEST_F(BuildTest, KeyConfigWithoutTd) {
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_key_config(); }), rcx(TDX_PAGE_METADATA_INCORRECT));
}

TEST_F(BuildTest, KeyConfigTwice) {
  create_td();
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_key_config(); }), TDX_KEY_STATE_INCORRECT);
}

TEST_F(BuildTest, AddcxWithoutTd) {
  const Pfn p = page();
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_addcx(p); }), with_operand(TDX_PAGE_METADATA_INCORRECT, Operand::RDX));
}

TEST_F(BuildTest, AddcxBeforeKeyConfig) {
  tdr = page();
  ASSERT_EQ(td.tdh_mng_create(tdr, kHkid), TDX_SUCCESS);
  const Pfn p = page();
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_addcx(p); }), TDX_TD_KEYS_NOT_CONFIGURED);
}

TEST_F(BuildTest, AddcxPageChecks) {
  tdr = page();
  ASSERT_EQ(td.tdh_mng_create(tdr, kHkid), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mng_key_config(), TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_addcx(Pfn{pool.size() + 5}); }), rcx(TDX_OPERAND_ADDR_RANGE_ERROR));
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_addcx(tdr); }), rcx(TDX_PAGE_METADATA_INCORRECT));
  EXPECT_EQ(td.chldcnt(), 0u);
}

TEST_F(BuildTest, AddcxBeyondTdcsPages) {
  tdr = page();
  ASSERT_EQ(td.tdh_mng_create(tdr, kHkid), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mng_key_config(), TDX_SUCCESS);
  for (int i = 0; i < td.config().tdcs_pages; ++i) ASSERT_EQ(td.tdh_mng_addcx(page()), TDX_SUCCESS);
  const Pfn extra = page();
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_addcx(extra); }), rcx(TDX_OPERAND_INVALID));
  EXPECT_EQ(td.pamt_type(extra), PamtType::Nda);
}

TEST_F(BuildTest, AddcxAfterInit) {
  create_td();
  const Pfn p = page();
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_addcx(p); }), TDX_OP_STATE_INCORRECT);
}

TEST_F(BuildTest, InitBeforeKeyConfig) {
  tdr = page();
  ASSERT_EQ(td.tdh_mng_create(tdr, kHkid), TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_init(); }), TDX_TD_KEYS_NOT_CONFIGURED);
}

TEST_F(BuildTest, InitWithTdcsMissing) {
  tdr = page();
  ASSERT_EQ(td.tdh_mng_create(tdr, kHkid), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mng_key_config(), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mng_addcx(page()), TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_init(); }), TDX_TDCS_NOT_ALLOCATED);
  EXPECT_EQ(td.op_state(), OpState::Uninitialized);
}

TEST_F(BuildTest, InitTwice) {
  create_td();
  EXPECT_EQ(unchanged([&] { return td.tdh_mng_init(); }), TDX_OP_STATE_INCORRECT);
}

TEST_F(BuildTest, VpCreateBeforeInit) {
  tdr = page();
  ASSERT_EQ(td.tdh_mng_create(tdr, kHkid), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mng_key_config(), TDX_SUCCESS);
  for (int i = 0; i < td.config().tdcs_pages; ++i) ASSERT_EQ(td.tdh_mng_addcx(page()), TDX_SUCCESS);
  const Pfn p = page();
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_create(0, p); }), TDX_OP_STATE_INCORRECT);
}

TEST_F(BuildTest, VpCreateDuplicateOrNegativeId) {
  create_td();
  add_vcpu(0);
  const Pfn p = page();
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_create(0, p); }), rcx(TDX_OPERAND_INVALID));
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_create(-1, p); }), rcx(TDX_OPERAND_INVALID));
}

TEST_F(BuildTest, VpCreatePageChecks) {
  create_td();
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_create(0, tdcs[0]); }), rcx(TDX_PAGE_METADATA_INCORRECT));
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_create(0, kInvalidPfn); }), rcx(TDX_OPERAND_ADDR_RANGE_ERROR));
}

TEST_F(BuildTest, VpAddcxUnknownVcpu) {
  create_td();
  const Pfn p = page();
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_addcx(9, p); }), with_operand(TDX_PAGE_METADATA_INCORRECT, Operand::RDX));
}

TEST_F(BuildTest, VpAddcxTooMany) {
  create_td();
  add_vcpu(0);  // initialized: no more TDCX pages accepted
  const Pfn p = page();
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_addcx(0, p); }), with_operand(TDX_OP_STATE_INCORRECT, Operand::TDVPR));
}

TEST_F(BuildTest, VpAddcxPageNotFree) {
  create_td();
  ASSERT_EQ(td.tdh_vp_create(1, page()), TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_addcx(1, tdr); }), rcx(TDX_PAGE_METADATA_INCORRECT));
}

TEST_F(BuildTest, VpAddcxPageOutOfRange) {
  create_td();
  ASSERT_EQ(td.tdh_vp_create(1, page()), TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_addcx(1, Pfn{pool.size()}); }), rcx(TDX_OPERAND_ADDR_RANGE_ERROR));
}

TEST_F(BuildTest, VpCallsAfterVpFlushDone) {
  create_td();
  ASSERT_EQ(td.tdh_vp_create(1, page()), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_vp_flush(1), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mng_vpflushdone(), TDX_SUCCESS);
  const Pfn p = page();
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_addcx(1, p); }), TDX_TD_KEYS_NOT_CONFIGURED);
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_init(1); }), TDX_TD_KEYS_NOT_CONFIGURED);
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_create(2, p); }), TDX_TD_KEYS_NOT_CONFIGURED);
}

TEST_F(BuildTest, VpInitUnknownVcpu) {
  create_td();
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_init(4); }), rcx(TDX_PAGE_METADATA_INCORRECT));
}

TEST_F(BuildTest, VpInitWithoutTdcx) {
  create_td();
  ASSERT_EQ(td.tdh_vp_create(1, page()), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_vp_addcx(1, page()), TDX_SUCCESS);  // one of two
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_init(1); }), with_operand(TDX_OP_STATE_INCORRECT, Operand::TDVPR));
}

TEST_F(BuildTest, VpInitTwice) {
  create_td();
  add_vcpu(1);
  EXPECT_EQ(unchanged([&] { return td.tdh_vp_init(1); }), with_operand(TDX_OP_STATE_INCORRECT, Operand::TDVPR));
}

TEST_F(BuildTest, FinalizeWithoutInitializedVcpu) {
  create_td();
  ASSERT_EQ(td.tdh_vp_create(0, page()), TDX_SUCCESS);  // created, never VP.INITed
  EXPECT_EQ(unchanged([&] { return td.tdh_mr_finalize(); }), TDX_NO_VCPUS);
  EXPECT_EQ(td.op_state(), OpState::Initialized);
}

TEST_F(BuildTest, FinalizeMakesRunnableOnce) {
  build_td();
  EXPECT_EQ(td.tdh_mr_finalize(), TDX_SUCCESS);
  EXPECT_EQ(td.op_state(), OpState::Runnable);
  EXPECT_EQ(unchanged([&] { return td.tdh_mr_finalize(); }), TDX_OP_STATE_INCORRECT);
}

TEST_F(BuildTest, FinalizeBeforeMngInit) {
  tdr = page();
  ASSERT_EQ(td.tdh_mng_create(tdr, kHkid), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mng_key_config(), TDX_SUCCESS);
  for (int i = 0; i < td.config().tdcs_pages; ++i) ASSERT_EQ(td.tdh_mng_addcx(page()), TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_mr_finalize(); }), TDX_OP_STATE_INCORRECT);
}

// ---- MR.EXTEND -------------------------------------------------------------------

class MrExtendTest : public TdxTest {
 protected:
  void SetUp() override {
    build_td();
    link(kGpa);
    ASSERT_EQ(td.tdh_mem_page_add(kGpa, 0, page(PageOwner::GuestPrivate), page(PageOwner::HostSource)).status,
              TDX_SUCCESS);
  }
  static constexpr uint64_t kGpa = 0x40000000;
};

TEST_F(MrExtendTest, EveryChunkOfAnAddedPage) {
  for (uint64_t off = 0; off < k4K; off += 256) EXPECT_EQ(td.tdh_mr_extend(kGpa + off), TDX_SUCCESS) << off;
}

TEST_F(MrExtendTest, Misaligned) {
  EXPECT_EQ(unchanged([&] { return td.tdh_mr_extend(kGpa + 0x80); }), rcx(TDX_OPERAND_INVALID));
}

TEST_F(MrExtendTest, SharedGpa) {
  EXPECT_EQ(unchanged([&] { return td.tdh_mr_extend(kGpa | (1ull << 47)); }), rcx(TDX_OPERAND_INVALID));
}

TEST_F(MrExtendTest, WalkFails) {
  EXPECT_EQ(unchanged([&] { return td.tdh_mr_extend(k512G * 3); }), rcx(TDX_EPT_WALK_FAILED));
}

TEST_F(MrExtendTest, FreeEntryIsNotPresent) {
  EXPECT_EQ(unchanged([&] { return td.tdh_mr_extend(kGpa + k4K); }), rcx(TDX_EPT_ENTRY_NOT_PRESENT));
}

TEST_F(MrExtendTest, PendingEntryIsNotPresent) {
  aug(kGpa + 2 * k4K);
  EXPECT_EQ(unchanged([&] { return td.tdh_mr_extend(kGpa + 2 * k4K); }), rcx(TDX_EPT_ENTRY_NOT_PRESENT));
}

TEST_F(MrExtendTest, AfterFinalize) {
  ASSERT_EQ(td.tdh_mr_finalize(), TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_mr_extend(kGpa); }), TDX_OP_STATE_INCORRECT);
}

}  // namespace
}  // namespace mirrormmu::tdx::test
