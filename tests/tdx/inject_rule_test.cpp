// SPDX-License-Identifier: MIT
// --inject's machinery: a leaf failing at its N-th call with a status from
// the leaf's own list, without running and without changing anything.
#include "tdx/tdx_fixture.h"

namespace mirrormmu::tdx::test {
namespace {

class InjectRuleTest : public TdxTest {
 protected:
  void SetUp() override { runnable_td(); }
  static constexpr uint64_t kGpa = 0x7654000;
};

TEST_F(InjectRuleTest, TheNthCallReturnsTheStatusAndChangesNothing) {
  const Status st = *injectable_status(Leaf::MEM_PAGE_AUG, "TDX_EPT_ENTRY_STATE_INCORRECT");
  inject.add_seamcall_rule({static_cast<uint32_t>(Leaf::MEM_PAGE_AUG), 2, st});
  link(kGpa);
  link(kGpa + k4K);
  aug(kGpa);  // call #1 runs
  EXPECT_FALSE(inject.seamcall_rule_fired(0));
  const Pfn p = page(PageOwner::GuestPrivate);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_aug(kGpa + k4K, 0, p); }), st);
  EXPECT_TRUE(inject.seamcall_rule_fired(0));
  EXPECT_EQ(td.injected_calls(), 1u);
  EXPECT_EQ(td.tdh_mem_page_aug(kGpa + k4K, 0, p).status, TDX_SUCCESS);  // call #3 runs
}

TEST(LeafErrors, EveryInjectableStatusHasANameAndRoundTrips) {
  size_t leaves = 0;
  for (size_t i = 0; i < kLeafCount; i++) {
    const Leaf leaf = static_cast<Leaf>(i);
    const auto& errors = leaf_errors(leaf);
    if (errors.empty()) continue;
    leaves++;
    for (const LeafError& e : errors) {
      const std::string name = status_name(e.base);
      EXPECT_NE(name.rfind("TDX_", 0), std::string::npos) << leaf_name(leaf) << ": unnamed " << name;
      const Status full = with_operand(e.base, e.operand);
      EXPECT_EQ(injectable_status(leaf, status_str(full)), full) << leaf_name(leaf) << " " << status_str(full);
      EXPECT_EQ(status_base(*injectable_status(leaf, name)), e.base);
    }
  }
  EXPECT_GE(leaves, 15u);
  EXPECT_FALSE(injectable_status(Leaf::MEM_PAGE_AUG, "TDX_FLUSHVP_NOT_DONE").has_value());
  EXPECT_TRUE(leaf_errors(Leaf::TDG_MEM_PAGE_ACCEPT).empty());
  EXPECT_EQ(leaf_by_name("TDH.MEM.PAGE.DEMOTE"), Leaf::MEM_PAGE_DEMOTE);
  EXPECT_FALSE(leaf_by_name("TDH.MEM.NOPE").has_value());
}

}  // namespace
}  // namespace mirrormmu::tdx::test
