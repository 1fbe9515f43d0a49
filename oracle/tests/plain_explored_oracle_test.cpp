// SPDX-License-Identifier: GPL-2.0-only
// The kernel's own MMU under the deterministic engine: every plain VM race
// explores clean on the real code, the dirty-log race exhaustively at one
// preemption, and an execution replays from its string.
#include <gtest/gtest.h>

#include "explore/explorer.h"
#include "oracle/kernel_backend.h"
#include "oracle/kmmu.h"
#include "workload/plain_explored.h"

namespace mirrormmu::oracle {
namespace {

explore::ExploreReport run(const std::string& scenario, explore::StrategyKind k, uint64_t budget) {
  register_kernel_mmu();
  register_plain_source();
  explore::ExploreConfig c;
  c.scenario = plain_source_name("kernel", scenario);
  c.strategy = k;
  c.budget = budget;
  c.preemptions = 1;
  std::string error;
  auto rep = explore::explore(c, {}, &error);
  EXPECT_TRUE(rep.has_value()) << error;
  return rep ? *rep : explore::ExploreReport{};
}

TEST(PlainExploredOracle, EveryRaceExploresCleanOnTheKernelsCode) {
  for (const auto& s : plain_scenarios()) {
    const auto rep = run(s.name, explore::StrategyKind::Pct, 40);
    EXPECT_TRUE(rep.ok()) << s.name << ": " << (rep.failures.empty() ? "" : rep.failures[0].result.detail);
    EXPECT_GT(rep.classes.count(), 0u) << s.name << ": the kernel's tracepoint reported no change";
  }
}

TEST(PlainExploredOracle, TheDirtyLogRaceIsExhaustedAtOnePreemption) {
  const auto rep = run("write-vs-dirty-log", explore::StrategyKind::Dfs, 2000);
  EXPECT_TRUE(rep.ok()) << (rep.failures.empty() ? "" : rep.failures[0].result.detail);
  EXPECT_TRUE(rep.exhausted);
  EXPECT_GT(rep.executions, 100u) << "the race did branch";
  // The last execution replays on the real code.
  std::string error;
  const auto again = explore::replay(rep.last, &error);
  ASSERT_TRUE(again.has_value()) << error;
  EXPECT_TRUE(again->ok) << again->detail;
}

}  // namespace
}  // namespace mirrormmu::oracle

namespace mirrormmu::oracle {
namespace {

// The classic bug of the memslot update protocol, planted in the glue around
// the real code: the explorer finds the dirty page it loses.
TEST(PlainExploredOracle, AFaultOutsideTheMemslotReadSectionIsFound) {
  kmmu_plant_fault_outside_srcu(true);
  const auto rep = run("write-vs-dirty-log", explore::StrategyKind::Dfs, 2000);
  kmmu_plant_fault_outside_srcu(false);
  ASSERT_FALSE(rep.failures.empty()) << "the explorer missed the planted race on the real code";
  const auto& inv = rep.failures[0].result.invariant;
  EXPECT_TRUE(inv == "writable_leaf_not_logged" || inv == "lost_dirty_page") << inv;
}

}  // namespace
}  // namespace mirrormmu::oracle

namespace mirrormmu::oracle {
namespace {

// The notifier's classic bug around the real code: a fault that never asks
// mmu_invalidate_retry_gfn() maps the page the host is migrating away, and
// the explorer finds the leaf left pointing at the freed frame.
TEST(PlainExploredOracle, AFaultThatIgnoresTheNotifierIsFound) {
  kmmu_plant_no_invalidate_retry(true);
  const auto rep = run("notifier-vs-fault", explore::StrategyKind::Dfs, 2000);
  kmmu_plant_no_invalidate_retry(false);
  ASSERT_FALSE(rep.failures.empty()) << "the explorer missed the planted race on the real code";
  const auto& inv = rep.failures[0].result.invariant;
  EXPECT_TRUE(inv == "leaf_pfn" || inv == "tlb_use_after_free") << inv << ": " << rep.failures[0].result.detail;
  // With the retry the same search is clean, and exhausts the bound.
  const auto clean = run("notifier-vs-fault", explore::StrategyKind::Dfs, 2000);
  EXPECT_TRUE(clean.ok()) << (clean.failures.empty() ? "" : clean.failures[0].result.detail);
  EXPECT_TRUE(clean.exhausted);
}

}  // namespace
}  // namespace mirrormmu::oracle

namespace mirrormmu::oracle {
namespace {

// fast_page_fault() around the real code, with mark_page_dirty_in_slot()
// forgotten: the write it lets through is missing from the next log.
TEST(PlainExploredOracle, AFastPageFaultThatDoesNotLogIsFound) {
  kmmu_plant_fast_pf_no_mark_dirty(true);
  const auto rep = run("write-vs-log-collect", explore::StrategyKind::Dfs, 2000);
  kmmu_plant_fast_pf_no_mark_dirty(false);
  ASSERT_FALSE(rep.failures.empty()) << "the lost dirty page went unnoticed on the real code";
  const auto& inv = rep.failures[0].result.invariant;
  EXPECT_TRUE(inv == "lost_dirty_page" || inv == "writable_leaf_not_logged") << inv << ": "
                                                                            << rep.failures[0].result.detail;
}

}  // namespace
}  // namespace mirrormmu::oracle

namespace mirrormmu::oracle {
namespace {

// KVM_PRE_FAULT_MEMORY as 6.12 had it, around the real code: a prefault
// that meets a memslot being deleted retries while holding the read section
// the deletion waits for. The explorer finds the livelock; with upstream's
// -EAGAIN the same race is clean.
TEST(PlainExploredOracle, APrefaultThatWaitsForADeletedMemslotIsFound) {
  kmmu_plant_prefault_retries_invalid_slot(true);
  const auto rep = run("prefault-vs-delete", explore::StrategyKind::Dfs, 2000);
  kmmu_plant_prefault_retries_invalid_slot(false);
  ASSERT_FALSE(rep.failures.empty()) << "the prefault livelock went unnoticed on the real code";
  const auto& inv = rep.failures[0].result.invariant;
  EXPECT_TRUE(inv == "livelock" || inv == "deadlock" || inv == "prefault_failed") << inv;
  EXPECT_TRUE(run("prefault-vs-delete", explore::StrategyKind::Dfs, 2000).ok());
}

}  // namespace
}  // namespace mirrormmu::oracle
