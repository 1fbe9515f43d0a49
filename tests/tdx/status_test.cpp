// SPDX-License-Identifier: MIT
// Status rendering, leaf names and numbers, enum names.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "tdx/module.h"
#include "tdx/status.h"

namespace mirrormmu::tdx {
namespace {

TEST(TdxStatus, NameOfBaseIgnoresOperand) {
  EXPECT_EQ(status_name(TDX_SUCCESS), "TDX_SUCCESS");
  EXPECT_EQ(status_name(with_operand(TDX_OPERAND_BUSY, Operand::SEPT_TREE)), "TDX_OPERAND_BUSY");
  EXPECT_EQ(status_name(TDX_EPT_PAGE_NOT_FREE), "TDX_EPT_PAGE_NOT_FREE");
}

TEST(TdxStatus, UnknownBaseIsHex) {
  EXPECT_EQ(status_name(0xC0000B7700000000ull), "0xc0000b7700000000");
}

TEST(TdxStatus, StrAppendsOperandName) {
  EXPECT_EQ(status_str(with_operand(TDX_OPERAND_BUSY, Operand::SEPT_TREE)), "TDX_OPERAND_BUSY|SEPT_TREE");
  EXPECT_EQ(status_str(with_operand(TDX_OPERAND_BUSY, Operand::TD_EPOCH)), "TDX_OPERAND_BUSY|TD_EPOCH");
  EXPECT_EQ(status_str(with_operand(TDX_EPT_WALK_FAILED, Operand::RCX)), "TDX_EPT_WALK_FAILED|RCX");
  EXPECT_EQ(status_str(with_operand(TDX_PAGE_METADATA_INCORRECT, Operand::R8)), "TDX_PAGE_METADATA_INCORRECT|R8");
  EXPECT_EQ(status_str(with_operand(TDX_OPERAND_BUSY, Operand::TDR)), "TDX_OPERAND_BUSY|TDR");
  EXPECT_EQ(status_str(TDX_TD_KEYS_NOT_CONFIGURED), "TDX_TD_KEYS_NOT_CONFIGURED");
}

TEST(TdxStatus, StrUnknownOperandIsHex) {
  EXPECT_EQ(status_str(TDX_OPERAND_INVALID | 0x77), "TDX_OPERAND_INVALID|0x77");
}

TEST(TdxStatus, AcceptDetailIsALevel) {
  EXPECT_EQ(status_str(TDX_PAGE_SIZE_MISMATCH | 1), "TDX_PAGE_SIZE_MISMATCH|level 1");
  EXPECT_EQ(status_str(TDX_PAGE_ALREADY_ACCEPTED | 0), "TDX_PAGE_ALREADY_ACCEPTED");
}

TEST(TdxStatus, ErrorAndBusyClassification) {
  EXPECT_TRUE(is_busy(with_operand(TDX_OPERAND_BUSY, Operand::RCX)));
  EXPECT_FALSE(is_busy(TDX_PREVIOUS_TLB_EPOCH_BUSY));
  EXPECT_FALSE(is_error(with_operand(TDX_GPA_RANGE_ALREADY_BLOCKED, Operand::RCX)));
  EXPECT_TRUE(is_error(with_operand(TDX_EPT_WALK_FAILED, Operand::RCX)));
}

TEST(TdxLeaf, ArchitecturalNumbers) {
  const std::pair<Leaf, int> expected[] = {
      {Leaf::VP_ENTER, 0},           {Leaf::MNG_ADDCX, 1},           {Leaf::MEM_PAGE_ADD, 2},
      {Leaf::MEM_SEPT_ADD, 3},       {Leaf::VP_ADDCX, 4},            {Leaf::MEM_PAGE_AUG, 6},
      {Leaf::MEM_RANGE_BLOCK, 7},    {Leaf::MNG_KEY_CONFIG, 8},      {Leaf::MNG_CREATE, 9},
      {Leaf::VP_CREATE, 10},         {Leaf::MEM_PAGE_DEMOTE, 15},    {Leaf::MR_EXTEND, 16},
      {Leaf::MR_FINALIZE, 17},       {Leaf::VP_FLUSH, 18},           {Leaf::MNG_VPFLUSHDONE, 19},
      {Leaf::MNG_KEY_FREEID, 20},    {Leaf::MNG_INIT, 21},           {Leaf::VP_INIT, 22},
      {Leaf::MEM_PAGE_PROMOTE, 23},  {Leaf::MEM_SEPT_RD, 25},        {Leaf::PHYMEM_PAGE_RECLAIM, 28},
      {Leaf::MEM_PAGE_REMOVE, 29},   {Leaf::MEM_SEPT_REMOVE, 30},    {Leaf::MEM_TRACK, 38},
      {Leaf::MEM_RANGE_UNBLOCK, 39}, {Leaf::PHYMEM_CACHE_WB, 40},    {Leaf::PHYMEM_PAGE_WBINVD, 41},
      {Leaf::PHYMEM_PAMT_ADD, 58},   {Leaf::PHYMEM_PAMT_REMOVE, 59}, {Leaf::TDG_MEM_PAGE_ACCEPT, 6},
  };
  EXPECT_EQ(std::size(expected), kLeafCount);
  for (auto [leaf, number] : expected) EXPECT_EQ(leaf_number(leaf), number) << leaf_name(leaf);
}

TEST(TdxLeaf, EveryLeafHasADistinctName) {
  std::set<std::string> names;
  for (size_t i = 0; i < kLeafCount; ++i) {
    const std::string n = leaf_name(static_cast<Leaf>(i));
    EXPECT_NE(n, "?");
    EXPECT_TRUE(names.insert(n).second) << n;
  }
  EXPECT_STREQ(leaf_name(Leaf::MEM_PAGE_AUG), "TDH.MEM.PAGE.AUG");
  EXPECT_STREQ(leaf_name(Leaf::TDG_MEM_PAGE_ACCEPT), "TDG.MEM.PAGE.ACCEPT");
}

TEST(TdxNames, SeptStatePublicCodes) {
  EXPECT_EQ(sept_state_public_code(SeptState::Free), 0x00);
  EXPECT_EQ(sept_state_public_code(SeptState::NlMapped), 0x84);
  EXPECT_EQ(sept_state_public_code(SeptState::NlBlocked), 0x81);
  EXPECT_EQ(sept_state_public_code(SeptState::Mapped), 0x04);
  EXPECT_EQ(sept_state_public_code(SeptState::Blocked), 0x01);
  EXPECT_EQ(sept_state_public_code(SeptState::Pending), 0x02);
  EXPECT_EQ(sept_state_public_code(SeptState::PendingBlocked), 0x03);
}

TEST(TdxNames, EnumNames) {
  EXPECT_STREQ(sept_state_name(SeptState::PendingBlocked), "PENDING_BLOCKED");
  EXPECT_STREQ(sept_state_name(SeptState::NlMapped), "NL_MAPPED");
  EXPECT_STREQ(op_state_name(OpState::Runnable), "RUNNABLE");
  EXPECT_STREQ(lifecycle_name(Lifecycle::KeysConfigured), "KEYS_CONFIGURED");
  EXPECT_STREQ(lifecycle_name(Lifecycle::Teardown), "TEARDOWN");
  EXPECT_STREQ(pamt_type_name(PamtType::Ept), "PT_EPT");
  EXPECT_STREQ(pamt_type_name(PamtType::Nda), "PT_NDA");
}

}  // namespace
}  // namespace mirrormmu::tdx
