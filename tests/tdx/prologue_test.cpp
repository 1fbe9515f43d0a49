// SPDX-License-Identifier: MIT
// The common prologue of every TDH.MEM call (fact sheet §2.0), checked for
// each call: TDR, lifecycle, TDCS, op-state, page-info, walk — in that order,
// each failure leaving the module untouched.
#include "tdx/tdx_fixture.h"

namespace mirrormmu::tdx::test {
namespace {

enum class Call { SeptAdd, PageAdd, PageAug, Block, Unblock, PageRemove, SeptRemove, SeptRd };

struct CallInfo {
  Call call;
  const char* name;
  int min_level;
  int max_level;  // -1: the root level
};
// gtest prints a parameter in test listings (and so in ctest's names): the
// call's name, not its bytes.
void PrintTo(const CallInfo& c, std::ostream* os) { *os << c.name; }

constexpr CallInfo kCalls[] = {
    {Call::SeptAdd, "SeptAdd", 1, -1},     {Call::PageAdd, "PageAdd", 0, 0},
    {Call::PageAug, "PageAug", 0, 1},      {Call::Block, "Block", 0, -1},
    {Call::Unblock, "Unblock", 0, -1},     {Call::PageRemove, "PageRemove", 0, 2},
    {Call::SeptRemove, "SeptRemove", 1, -1}, {Call::SeptRd, "SeptRd", 0, -1},
};

class MemPrologueTest : public TdxTest, public ::testing::WithParamInterface<CallInfo> {
 protected:
  Ret invoke(uint64_t gpa, int level) {
    switch (GetParam().call) {
      case Call::SeptAdd: return td.tdh_mem_sept_add(gpa, level, page(PageOwner::SeptPage));
      case Call::PageAdd:
        return td.tdh_mem_page_add(gpa, level, page(PageOwner::GuestPrivate), page(PageOwner::HostSource));
      case Call::PageAug: return td.tdh_mem_page_aug(gpa, level, page(PageOwner::GuestPrivate));
      case Call::Block: return td.tdh_mem_range_block(gpa, level);
      case Call::Unblock: return td.tdh_mem_range_unblock(gpa, level);
      case Call::PageRemove: return td.tdh_mem_page_remove(gpa, level);
      case Call::SeptRemove: return td.tdh_mem_sept_remove(gpa, level);
      case Call::SeptRd: return td.tdh_mem_sept_rd(gpa, level);
    }
    return {};
  }
  int min_level() const { return GetParam().min_level; }
  int max_level() const { return GetParam().max_level < 0 ? td.config().sept_levels - 1 : GetParam().max_level; }
  Status call_unchanged(uint64_t gpa, int level) {
    return unchanged([&] { return invoke(gpa, level); });
  }
  void keys_configured_partial_tdcs() {
    tdr = page();
    ASSERT_EQ(td.tdh_mng_create(tdr, kHkid), TDX_SUCCESS);
    ASSERT_EQ(td.tdh_mng_key_config(), TDX_SUCCESS);
    ASSERT_EQ(td.tdh_mng_addcx(page()), TDX_SUCCESS);
  }
};

TEST_P(MemPrologueTest, NoTdrIsMetadataIncorrectRdx) {
  EXPECT_EQ(call_unchanged(0, min_level()), with_operand(TDX_PAGE_METADATA_INCORRECT, Operand::RDX));
}

TEST_P(MemPrologueTest, KeysNotConfigured) {
  tdr = page();
  ASSERT_EQ(td.tdh_mng_create(tdr, kHkid), TDX_SUCCESS);
  EXPECT_EQ(call_unchanged(0, min_level()), TDX_TD_KEYS_NOT_CONFIGURED);
}

TEST_P(MemPrologueTest, TdcsNotAllocated) {
  keys_configured_partial_tdcs();
  EXPECT_EQ(call_unchanged(0, min_level()), TDX_TDCS_NOT_ALLOCATED);
}

TEST_P(MemPrologueTest, OpStateUninitialized) {
  keys_configured_partial_tdcs();
  for (int i = 1; i < td.config().tdcs_pages; ++i) ASSERT_EQ(td.tdh_mng_addcx(page()), TDX_SUCCESS);
  EXPECT_EQ(call_unchanged(0, min_level()), TDX_OP_STATE_INCORRECT);
}

// Lifecycle is checked before the page-info operand: a bad GPA still gets
// the lifecycle error.
TEST_P(MemPrologueTest, LifecycleWinsOverPageInfo) {
  tdr = page();
  ASSERT_EQ(td.tdh_mng_create(tdr, kHkid), TDX_SUCCESS);
  EXPECT_EQ(call_unchanged(1ull << 47, 7), TDX_TD_KEYS_NOT_CONFIGURED);
}

TEST_P(MemPrologueTest, LevelOutOfRange) {
  build_td();
  if (min_level() > 0) {
    EXPECT_EQ(call_unchanged(0, min_level() - 1), rcx(TDX_OPERAND_INVALID));
  }
  EXPECT_EQ(call_unchanged(0, max_level() + 1), rcx(TDX_OPERAND_INVALID));
  EXPECT_EQ(call_unchanged(0, -1), rcx(TDX_OPERAND_INVALID));
}

TEST_P(MemPrologueTest, GpaNotAlignedToLevel) {
  build_td();
  const int level = max_level();
  const uint64_t misaligned = (k4K << (9 * level)) >> 1;  // half an entry's size
  EXPECT_EQ(call_unchanged(misaligned, level), rcx(TDX_OPERAND_INVALID));
}

TEST_P(MemPrologueTest, SharedOrBeyondGpaw) {
  build_td();
  EXPECT_EQ(call_unchanged(1ull << 47, min_level()), rcx(TDX_OPERAND_INVALID));
  EXPECT_EQ(call_unchanged(1ull << 48, min_level()), rcx(TDX_OPERAND_INVALID));
  EXPECT_EQ(call_unchanged(1ull << 52, min_level()), rcx(TDX_OPERAND_INVALID));
}

TEST_P(MemPrologueTest, WalkFailsAtFreeRootEntry) {
  build_td();
  const Snapshot before = snapshot();
  const Ret r = invoke(0, min_level());
  EXPECT_EQ(snapshot(), before);
  EXPECT_EQ(r.status, rcx(TDX_EPT_WALK_FAILED));
  EXPECT_EQ(r.level_state, 3u);          // stopped at the level-3 (PML4) entry, state FREE (0x00)
  EXPECT_EQ(r.entry, 1ull << 63);        // a FREE entry reads as just suppress-#VE
}

TEST_P(MemPrologueTest, WalkStopsAtBlockedParent) {
  build_td();
  link(k1G, 0);  // PML4 -> PDPT -> PD -> PT for GPA 1G
  ASSERT_EQ(td.tdh_mem_range_block(k1G, 2).status, TDX_SUCCESS);  // PDPT entry -> NL_BLOCKED
  const Ret r = invoke(k1G, min_level());
  EXPECT_EQ(r.status, rcx(TDX_EPT_WALK_FAILED));
  EXPECT_EQ(r.level_state, 2u | (0x81u << 8));
}

TEST_P(MemPrologueTest, KeysNotConfiguredAfterVpFlushDone) {
  build_td();
  link(0, 0);
  ASSERT_EQ(td.tdh_vp_flush(0), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mng_vpflushdone(), TDX_SUCCESS);
  EXPECT_EQ(call_unchanged(0, min_level()), TDX_TD_KEYS_NOT_CONFIGURED);
}

INSTANTIATE_TEST_SUITE_P(AllMemCalls, MemPrologueTest, ::testing::ValuesIn(kCalls),
                         [](const auto& info) { return std::string(info.param.name); });

// ---- TRACK has the TDR in RCX and no page-info ----------------------------------

using TrackPrologueTest = TdxTest;

TEST_F(TrackPrologueTest, NoTdr) {
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_track(); }), rcx(TDX_PAGE_METADATA_INCORRECT));
}

TEST_F(TrackPrologueTest, KeysNotConfigured) {
  tdr = page();
  ASSERT_EQ(td.tdh_mng_create(tdr, kHkid), TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_track(); }), TDX_TD_KEYS_NOT_CONFIGURED);
}

TEST_F(TrackPrologueTest, BeforeMngInit) {
  tdr = page();
  ASSERT_EQ(td.tdh_mng_create(tdr, kHkid), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mng_key_config(), TDX_SUCCESS);
  for (int i = 0; i < td.config().tdcs_pages; ++i) ASSERT_EQ(td.tdh_mng_addcx(page()), TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_track(); }), TDX_OP_STATE_INCORRECT);
}

}  // namespace
}  // namespace mirrormmu::tdx::test
