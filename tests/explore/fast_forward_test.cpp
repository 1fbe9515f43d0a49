// SPDX-License-Identifier: MIT
// Fast-forwarding a walk over never-filled entries (DetEngine::fast_forward,
// TdpIter::skip_empty_run) must change nothing an exploration reports: the
// same executions in the same order, each with the same steps, decisions,
// end state, verdict and sites. And it must refuse whenever a skipped point
// could have mattered: another thread that could still run, a forced yield
// that could be injected, a strategy following steps, a freed table.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <tuple>
#include <vector>

#include "explore/explorer.h"
#include "sync/det_engine.h"
#include "sync/sched.h"
#include "workload/plain_explored.h"
#include "builtin_names.h"

namespace mirrormmu::test {
namespace {

using Row = std::tuple<uint64_t, uint64_t, uint64_t, bool, std::string, std::vector<uint64_t>>;

struct Explored {
  std::vector<Row> rows;  // per execution, in the order DFS ran them
  uint64_t fast_forwarded = 0;
};

Explored explore_rows(const std::string& name, bool fast_forward, int bound, uint64_t budget,
                 std::array<uint32_t, sync::kFailKindCount> fail = {}) {
  Explored run;
  explore::ExploreConfig cfg;
  cfg.scenario = name;
  for (const auto& b : explore::builtin_scenarios())
    if (b.name == name && b.make(1).huge_pages) cfg.design = "hugepage-v5";
  cfg.scale = 1;
  cfg.preemptions = bound;
  cfg.budget = budget;
  cfg.shrink = false;
  cfg.max_failures = 1000;
  cfg.fail_budget = fail;
  cfg.fast_forward = fast_forward;
  cfg.on_execution = [&](const explore::ExecResult& r, const explore::Schedule&) {
    run.rows.emplace_back(r.steps, r.decisions, r.end_state, r.ok, r.invariant,
                          std::vector<uint64_t>(r.sites.begin(), r.sites.end()));
    run.fast_forwarded += r.steps_fast_forwarded;
  };
  std::string error;
  const auto rep = explore::explore(cfg, nullptr, &error);
  EXPECT_TRUE(rep.has_value()) << name << ": " << error;
  return run;
}


class ScenarioFastForward : public ::testing::TestWithParam<std::string> {};

TEST_P(ScenarioFastForward, SameExecutionsPointForPoint) {
  const Explored slow = explore_rows(GetParam(), false, 1, 40);
  const Explored fast = explore_rows(GetParam(), true, 1, 40);
  ASSERT_FALSE(slow.rows.empty());
  EXPECT_EQ(slow.fast_forwarded, 0u);
  ASSERT_EQ(fast.rows.size(), slow.rows.size());
  for (size_t i = 0; i < slow.rows.size(); i++) EXPECT_EQ(fast.rows[i], slow.rows[i]) << "execution " << i;
}

INSTANTIATE_TEST_SUITE_P(Builtin, ScenarioFastForward, ::testing::ValuesIn(builtin_scenario_names()),
                         ScenarioParamName());

// Where the time went: a TD's teardown walks every table of every root.
TEST(FastForward, PassesMostOfATdTeardown) {
  const Explored fast = explore_rows("fault-fault-2m", true, 0, 1);
  ASSERT_EQ(fast.rows.size(), 1u);
  const uint64_t steps = std::get<0>(fast.rows[0]);
  EXPECT_GT(fast.fast_forwarded * 2, steps) << fast.fast_forwarded << " of " << steps;
}

// With failures injectable in teardown, the executions that inject them are
// the same too; a forced yield budget turns fast-forwarding off altogether.
TEST(FastForward, SameWithFailuresAndNoneWithForcedYields) {
  std::array<uint32_t, sync::kFailKindCount> busy{};
  busy[static_cast<size_t>(sync::FailKind::SeamcallBusy)] = 1;
  const Explored slow = explore_rows("fault-vs-convert", false, 0, 60, busy);
  const Explored fast = explore_rows("fault-vs-convert", true, 0, 60, busy);
  ASSERT_GT(slow.rows.size(), 1u);
  EXPECT_EQ(fast.rows, slow.rows);
  EXPECT_GT(fast.fast_forwarded, 0u);
  std::array<uint32_t, sync::kFailKindCount> yields{};
  yields[static_cast<size_t>(sync::FailKind::ForcedYield)] = 1;
  const Explored forced = explore_rows("fault-fault-2m", true, 0, 30, yields);
  ASSERT_FALSE(forced.rows.empty());
  EXPECT_EQ(forced.fast_forwarded, 0u);
}

// ---- the engine's conditions, one by one ------------------------------------

class Default : public sync::DetStrategy {
 public:
  bool steps = false;
  uint32_t pick_thread(uint64_t, uint64_t, const std::vector<int>&, bool) override { return 0; }
  uint32_t pick_fail(uint64_t, uint64_t, sync::FailKind, uint32_t) override { return 0; }
  bool wants_steps() const override { return steps; }
};

alignas(4096) uint64_t g_table[512];

TEST(FastForward, OnlyWhenEveryOtherThreadHasEnded) {
  Default s;
  sync::DetEngine e(s, {});
  static const char never = 0;
  bool while_peer_runnable = true, while_peer_blocked = true, alone = false;
  bool woken = false;
  e.spawn("walker", [&] {
    while_peer_runnable = e.fast_forward(g_table, 10);
    sync::cond_resched_spin(&g_table);  // gives way: the peer runs and blocks
    while_peer_blocked = e.fast_forward(g_table, 10);
    sync::wake_event(&never);
    sync::cond_resched_spin(&g_table);  // the peer wakes and ends
    alone = e.fast_forward(g_table, 10);
  });
  e.spawn("peer", [&] {
    sync::wait_event(&never);
    woken = true;
  });
  ASSERT_TRUE(e.run());
  ASSERT_TRUE(woken);
  EXPECT_FALSE(while_peer_runnable);
  EXPECT_FALSE(while_peer_blocked) << "a blocked thread can be woken by what the skipped steps would have done";
  EXPECT_TRUE(alone);
}

TEST(FastForward, NotForAFreedTableNorAFollowedStrategyNorForcedYields) {
  Default s;
  {
    sync::DetEngine e(s, {});
    void* freed = std::aligned_alloc(4096, 4096);
    bool on_freed = true, on_live = false;
    e.spawn("t", [&] {
      e.quarantine(freed);  // freed after its grace period: reading it is a use after free
      on_freed = e.fast_forward(static_cast<char*>(freed) + 64, 5);
      on_live = e.fast_forward(g_table, 5);
    });
    ASSERT_TRUE(e.run());
    EXPECT_FALSE(on_freed);
    EXPECT_TRUE(on_live);
    EXPECT_EQ(e.steps_fast_forwarded(), 5u);
  }
  {
    s.steps = true;
    sync::DetEngine e(s, {});
    bool followed = true;
    e.spawn("t", [&] { followed = e.fast_forward(g_table, 5); });
    ASSERT_TRUE(e.run());
    EXPECT_FALSE(followed);
    s.steps = false;
  }
  {
    sync::DetLimits l;
    l.fail_budget[static_cast<size_t>(sync::FailKind::ForcedYield)] = 1;
    sync::DetEngine e(s, l);
    bool with_yields = true;
    e.spawn("t", [&] { with_yields = e.fast_forward(g_table, 5); });
    ASSERT_TRUE(e.run());
    EXPECT_FALSE(with_yields);
  }
  {
    sync::DetLimits l;
    l.max_steps = 20;
    sync::DetEngine e(s, l);
    bool past_limit = true;
    e.spawn("t", [&] { past_limit = e.fast_forward(g_table, 50); });
    ASSERT_TRUE(e.run());
    EXPECT_FALSE(past_limit) << "the step limit must still catch a walk that never ends";
  }
}

}  // namespace
}  // namespace mirrormmu::test
