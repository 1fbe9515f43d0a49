// SPDX-License-Identifier: MIT
// The transition table: computed rows carry evidence that reproduces them,
// sites are charged to the row whose handling hit them, rows nothing reaches
// are driven, and two designs' differences are the rows they disagree on.
#include <gtest/gtest.h>

#include "check/checker.h"
#include "explore/drive.h"
#include "explore/explorer.h"
#include "report/table.h"
#include "tdx/status.h"
#include "workload/runner.h"

namespace mirrormmu::test {
namespace {

using report::RowKind;

size_t row(RowKind o, RowKind n, bool shared, bool mirror) { return report::row_index({o, n, shared, mirror}); }

report::DesignTable table_of(const std::string& design, bool inject_runs) {
  report::TableConfig cfg;
  cfg.executions_per_pass = 4;
  cfg.inject_runs = inject_runs;
  std::string error;
  auto t = report::compute_table(design, cfg, nullptr, &error);
  EXPECT_TRUE(t) << error;
  return t ? std::move(*t) : report::DesignTable{};
}

TEST(TransitionTable, RowIndexRoundTrips) {
  for (size_t i = 0; i < report::kTableRows; i++) EXPECT_EQ(report::row_index(report::row_key(i)), i);
  // FROZEN_SPTE is non-present to handle_changed_spte, and so to the table.
  const size_t frozen = TransitionCounts::index({spte::Kind::Leaf, spte::Kind::Frozen, false, true});
  EXPECT_EQ(report::row_of_class(frozen), row(RowKind::Leaf, RowKind::NonPresent, false, true));
}

// The evidence of a reached row is a schedule that, replayed, reaches it;
// a site is listed with the run whose injected failure led there.
TEST(TransitionTable, EvidenceReplaysTheRow) {
  const auto t = table_of("upstream", true);
  const auto& r = t.rows[row(RowKind::NonPresent, RowKind::Leaf, true, true)];
  ASSERT_GT(r.attempts, 0u);
  const std::string prefix = "mirrormmu replay '";
  ASSERT_EQ(r.reached.command.rfind(prefix, 0), 0u) << r.reached.command;
  const std::string sched = r.reached.command.substr(prefix.size(), r.reached.command.size() - prefix.size() - 1);
  std::string error;
  auto s = explore::Schedule::parse(sched, &error);
  ASSERT_TRUE(s) << error;
  auto res = explore::replay(*s, &error);
  ASSERT_TRUE(res) << error;
  ASSERT_FALSE(res->rows.empty());
  const size_t cls = TransitionCounts::index({spte::Kind::NonPresent, spte::Kind::Leaf, true, true});
  EXPECT_GT(res->rows[cls].attempts, 0u);

  ASSERT_EQ(r.sites.count(Site::tdh_mem_page_aug), 1u);
  EXPECT_NE(r.sites.at(Site::tdh_mem_page_aug).first.command.find("--inject 'TDH.MEM.PAGE.AUG#1="), std::string::npos);
  EXPECT_FALSE(r.sites.at(Site::tdh_mem_page_aug).first.injected.empty());
}

// A non-BUSY AUG failure is charged to the mapping row, with the run that
// injected it as evidence.
TEST(TransitionTable, SiteChargedToTheRowThatHitIt) {
  WorkloadConfig wc;
  wc.gib = 0.02;
  wc.threads = false;
  const tdx::Status st = *tdx::injectable_status(tdx::Leaf::MEM_PAGE_AUG, "TDX_OPERAND_INVALID");
  wc.seamcall_injections.push_back({{static_cast<uint32_t>(tdx::Leaf::MEM_PAGE_AUG), 1, st}, "x"});
  RunOutcome out = run_workload(wc);
  ASSERT_TRUE(out.checker);
  const TransitionRows rows = out.checker->transition_rows();
  const size_t cls = TransitionCounts::index({spte::Kind::NonPresent, spte::Kind::Leaf, true, true});
  EXPECT_EQ(rows[cls].sites.count(Site::tdh_mem_page_aug), 1u);
  EXPECT_EQ(rows[cls].refused.count(-EIO), 1u);
  EXPECT_EQ(rows[kRowOutside].sites.count(Site::tdh_mem_page_aug), 0u);
}

// upstream's dispatcher sends any change of a present entry down the removal
// path: a permission change of a private leaf removes it from the S-EPT, and
// the checker sees the mirror and the S-EPT disagree.
TEST(TransitionTable, DrivenRowShowsUpstreamRemovesOnPresentToPresent) {
  const auto d = explore::drive_transition("upstream", spte::Kind::Leaf, spte::Kind::Leaf, false, true);
  EXPECT_EQ(d.outcome, "accepted");
  bool unpropagated = false;
  for (const auto& v : d.violations) unpropagated |= v.rfind("mirror_leaf_unpropagated", 0) == 0;
  EXPECT_TRUE(unpropagated);
  // hugepage-v5 refuses a split under the shared lock instead.
  const auto h = explore::drive_transition("hugepage-v5", spte::Kind::Leaf, spte::Kind::NonLeaf, true, true);
  EXPECT_EQ(h.outcome, "refused -EOPNOTSUPP");
  // A direct-root write-protection is an ordinary change.
  const auto w = explore::drive_transition("upstream", spte::Kind::Leaf, spte::Kind::Leaf, false, false);
  EXPECT_EQ(w.outcome, "accepted");
  EXPECT_TRUE(w.sites.empty());
  EXPECT_TRUE(w.violations.empty());
}

TEST(TransitionTable, UnreachedRowsAreDrivenAndDifferencesFound) {
  const auto up = table_of("upstream", false);
  const auto hp = table_of("hugepage-v5", false);
  size_t driven = 0;
  for (const auto& r : up.rows) {
    if (r.attempts) continue;
    EXPECT_TRUE(r.drive.attempted);
    EXPECT_FALSE(r.drive.outcome.empty());
    driven++;
  }
  EXPECT_GT(driven, 0u);
  // Only hugepage-v5 splits private huge leaves.
  EXPECT_EQ(up.rows[row(RowKind::Leaf, RowKind::NonLeaf, false, true)].attempts, 0u);
  EXPECT_GT(hp.rows[row(RowKind::Leaf, RowKind::NonLeaf, false, true)].attempts, 0u);
  const std::string diff = report::format_table_diff(up, hp, report::TableFormat::Text);
  EXPECT_NE(diff.find("leaf -> non-leaf, exclusive, mirror"), std::string::npos) << diff;
  // The same design never differs from itself.
  EXPECT_NE(report::format_table_diff(up, up, report::TableFormat::Text).find(": 0 of 64 rows"), std::string::npos);
}

}  // namespace
}  // namespace mirrormmu::test
