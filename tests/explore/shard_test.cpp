// SPDX-License-Identifier: MIT
// --shard I/N: the N parts of a search, merged, are the search. Exhaustive
// DFS searches must agree exactly on what they ran and saw; PCT and random
// searches run the same executions, split N ways.
#include <gtest/gtest.h>

#include <set>

#include "explore/explorer.h"

namespace mirrormmu::test {
namespace {

explore::ExploreReport run(explore::ExploreConfig cfg, int shard, int shards) {
  cfg.shard = shard;
  cfg.shards = shards;
  std::string error;
  auto r = explore::explore(cfg, nullptr, &error);
  EXPECT_TRUE(r.has_value()) << error;
  return r ? *r : explore::ExploreReport{};
}

std::set<std::string> invariants(const explore::ExploreReport& r) {
  std::set<std::string> s;
  for (const auto& f : r.failures) s.insert(f.result.invariant);
  return s;
}

void expect_same(const explore::ExploreReport& whole, const explore::ExploreReport& merged, const std::string& what) {
  EXPECT_EQ(merged.executions, whole.executions) << what;
  EXPECT_EQ(merged.exhausted, whole.exhausted) << what;
  EXPECT_EQ(merged.classes, whole.classes) << what;
  EXPECT_EQ(merged.sites, whole.sites) << what;
  EXPECT_EQ(merged.fired, whole.fired) << what;
  EXPECT_EQ(merged.max_steps, whole.max_steps) << what;
  EXPECT_EQ(merged.max_decisions, whole.max_decisions) << what;
  EXPECT_EQ(invariants(merged), invariants(whole)) << what;
}

// An exhaustive DFS at one preemption: small enough to finish.
explore::ExploreConfig dfs1(const char* scenario, const char* design = "upstream", int scale = 1) {
  explore::ExploreConfig cfg;
  cfg.scenario = scenario;
  cfg.design = design;
  cfg.scale = scale;
  cfg.preemptions = 1;
  cfg.budget = 100000;
  return cfg;
}

explore::ExploreReport merged(const explore::ExploreConfig& cfg, int n) {
  std::vector<std::pair<int, explore::ExploreReport>> parts;
  uint64_t sum = 0;
  for (int i = n; i-- > 0;) {  // any order
    parts.emplace_back(i, run(cfg, i, n));
    sum += parts.back().second.executions;
  }
  std::string error;
  auto m = explore::merge_reports(parts, n, cfg.max_failures, &error);
  EXPECT_TRUE(m.has_value()) << error;
  EXPECT_EQ(m ? m->executions : 0, sum);
  return m ? *m : explore::ExploreReport{};
}

TEST(Shard, ExhaustiveDfsSplitsAndMergesExactly) {
  for (const char* scenario : {"fault-fault-2m", "fault-vs-convert", "zero-step-vs-aug"}) {
    const explore::ExploreConfig cfg = dfs1(scenario);
    const auto whole = run(cfg, 0, 1);
    ASSERT_TRUE(whole.exhausted) << scenario << ": the test needs a search that finishes";
    for (int n : {2, 3}) {
      const auto m = merged(cfg, n);
      expect_same(whole, m, std::string(scenario) + " in " + std::to_string(n) + " shards");
    }
  }
}

TEST(Shard, EachShardRunsLessThanTheWhole) {
  const explore::ExploreConfig cfg = dfs1("fault-fault-2m");
  const auto whole = run(cfg, 0, 1);
  for (int i = 0; i < 2; i++) {
    const auto part = run(cfg, i, 2);
    EXPECT_GT(part.executions, 0u) << "shard " << i << " owns nothing";
    EXPECT_LT(part.executions, whole.executions) << "shard " << i;
  }
}

TEST(Shard, FailuresFoundByAShardSurviveTheMerge) {
  explore::ExploreConfig cfg = dfs1("fault-vs-convert", "upstream+lax-tlb-tracking+no-kick-after-track", 2);
  cfg.shrink = false;
  const auto whole = run(cfg, 0, 1);
  ASSERT_FALSE(whole.failures.empty());
  expect_same(whole, merged(cfg, 2), "planted, 2 shards");
}

TEST(Shard, PctAndRandomRunTheSameExecutionsSplit) {
  for (auto k : {explore::StrategyKind::Pct, explore::StrategyKind::Random}) {
    explore::ExploreConfig cfg;
    cfg.scenario = "fault-fault-2m";
    cfg.strategy = k;
    cfg.budget = 30;
    const auto whole = run(cfg, 0, 1);
    const auto m = merged(cfg, 3);
    EXPECT_EQ(m.executions, 30u);
    expect_same(whole, m, k == explore::StrategyKind::Pct ? "pct" : "random");
  }
}

TEST(Shard, AnIncompleteOrRepeatedSetIsRefused) {
  std::string error;
  std::vector<std::pair<int, explore::ExploreReport>> parts{{0, {}}, {0, {}}};
  EXPECT_FALSE(explore::merge_reports(parts, 2, 3, &error).has_value());
  EXPECT_NE(error.find("twice"), std::string::npos) << error;
  parts = {{1, {}}};
  EXPECT_FALSE(explore::merge_reports(parts, 2, 3, &error).has_value());
  EXPECT_NE(error.find("missing"), std::string::npos) << error;
  parts = {{0, {}}, {2, {}}};
  EXPECT_FALSE(explore::merge_reports(parts, 2, 3, &error).has_value());
}

}  // namespace
}  // namespace mirrormmu::test
