// SPDX-License-Identifier: MIT
// The explorer reaches the MMU notifier's race with a fault and the
// prefault's race with a memslot deletion, and finds the classic bug of
// each: a fault that never asks mmu_invalidate_retry_gfn(), and 6.12's
// prefault that retries on a memslot being deleted while holding SRCU.
// The code as merged stays clean on every schedule of the same search.
// Also the first root's allocation by two vCPUs at once (found by the
// bench's two-thread populate, on OS threads, before it was fixed).
#include <gtest/gtest.h>

#include "explore/explorer.h"
#include "spte/transition_class.h"

namespace mirrormmu::test {
namespace {

explore::ExploreConfig dfs(std::string scenario, std::string design) {
  explore::ExploreConfig cfg;
  cfg.scenario = std::move(scenario);
  cfg.design = std::move(design);
  cfg.strategy = explore::StrategyKind::Dfs;
  cfg.budget = 400;
  cfg.seed = 1;
  cfg.shrink = false;
  cfg.max_steps = 200'000;  // a livelock need not run to the default 2M
  return cfg;
}

void expect_clean(const explore::ExploreConfig& cfg) {
  std::string err;
  const auto r = explore::explore(cfg, nullptr, &err);
  ASSERT_TRUE(r.has_value()) << err;
  EXPECT_GT(r->executions, 10u) << cfg.scenario;
  for (const auto& f : r->failures)
    ADD_FAILURE() << cfg.scenario << ": " << f.result.invariant << ": " << f.result.detail
                  << "\n  replay: " << f.schedule.str();
}

explore::Failure first_failure(explore::ExploreConfig cfg) {
  cfg.max_failures = 1;
  std::string err;
  const auto r = explore::explore(cfg, nullptr, &err);
  EXPECT_TRUE(r.has_value()) << err;
  if (!r || r->failures.empty()) {
    ADD_FAILURE() << cfg.scenario << " on " << cfg.design << ": nothing found";
    return {};
  }
  return r->failures.front();
}

TEST(HostPrefaultExplore, MprotectRacingAWriteFault) {
  expect_clean(dfs("write-vs-mprotect", "upstream"));
  const explore::Failure f = first_failure(dfs("write-vs-mprotect", "upstream+no-invalidate-retry"));
  EXPECT_EQ(f.result.invariant, "host_prot") << f.result.detail;
  // The schedule replays to the same failure, and without the switch it
  // is clean.
  std::string err;
  const auto again = explore::replay(f.schedule, &err);
  ASSERT_TRUE(again.has_value()) << err;
  EXPECT_EQ(again->invariant, "host_prot");
  explore::Schedule fixed = f.schedule;
  fixed.design = "upstream";
  const auto ok = explore::replay(fixed, &err);
  ASSERT_TRUE(ok.has_value()) << err;
  EXPECT_TRUE(ok->ok) << ok->invariant << ": " << ok->detail;
}

TEST(HostPrefaultExplore, PrefaultRacingTheMemslotsDeletion) {
  expect_clean(dfs("prefault-vs-delete", "upstream"));
  const explore::Failure f = first_failure(dfs("prefault-vs-delete", "upstream+prefault-retries-invalid-slot"));
  EXPECT_EQ(f.result.invariant, "livelock") << f.result.detail;
  EXPECT_NE(f.result.detail.find("vcpu0 running and vmm blocked"), std::string::npos) << f.result.detail;
}

// Two vCPUs load their first roots at once. kvm_tdp_mmu_alloc_root() looks
// for a usable root and adds its own under one hold of the pages lock, so
// they share one; planted with the hold split in two, both allocate a
// mirror root and the second one's SEPT.ADD of the upper levels meets
// entries the first already linked.
TEST(RootAllocExplore, TwoVcpusLoadingTheirFirstRootShareIt) {
  expect_clean(dfs("fault-fault-2m", "upstream"));
  const explore::Failure f = first_failure(dfs("fault-fault-2m", "upstream+alloc-root-recheck-unlocked"));
  EXPECT_EQ(f.result.invariant, "bug_site") << f.result.detail;
  EXPECT_NE(f.result.detail.find("tdh_mem_sept_add"), std::string::npos) << f.result.detail;
  std::string err;
  explore::Schedule fixed = f.schedule;
  fixed.design = "upstream";
  const auto ok = explore::replay(fixed, &err);
  ASSERT_TRUE(ok.has_value()) << err;
  EXPECT_TRUE(ok->ok) << ok->invariant << ": " << ok->detail;
}

// single-hook's S-EPT pool for the VM serves splits, which run with mmu_lock
// dropped: two vCPUs demoting their own PENDING 2M mappings at once (4K
// accepts) both take a page from it. Fixed, each take tops the pool up under
// the same hold of its lock; planted with the top-up under a hold of its own
// (the shape the TSan run caught), the second split finds the one page the
// first top-up left gone (WARN tdx_pool_empty).
TEST(SplitPoolExplore, TwoSplitsAtOnceEachGetTheirPage) {
  const std::string scenario = MIRRORMMU_SCENARIOS_DIR "/split-split-tdx-pool.json";
  auto cfg = dfs(scenario, "single-hook");
  cfg.budget = 3000;  // the whole tree at two preemptions (about 1,400)
  std::string err;
  const auto clean = explore::explore(cfg, nullptr, &err);
  ASSERT_TRUE(clean.has_value()) << err;
  EXPECT_TRUE(clean->exhausted);
  EXPECT_TRUE(clean->failures.empty()) << clean->failures.front().result.detail;
  EXPECT_GT(clean->executions, 100u);
  // The splits happened (a mirror leaf became a table under the exclusive
  // lock): the race was there to lose.
  bool split_seen = false;
  for (size_t i = 0; i < TransitionCounts::kClasses; i++)
    split_seen |= clean->classes[i] && TransitionCounts::at(i).name() == "leaf->nonleaf exclusive mirror";
  EXPECT_TRUE(split_seen);

  cfg.design = "single-hook+split-pool-topup-apart";
  const explore::Failure f = first_failure(cfg);
  EXPECT_EQ(f.result.invariant, "bug_site") << f.result.detail;
  EXPECT_NE(f.result.detail.find("tdx_pool_empty"), std::string::npos) << f.result.detail;
  explore::Schedule fixed = f.schedule;
  fixed.design = "single-hook";
  const auto ok = explore::replay(fixed, &err);
  ASSERT_TRUE(ok.has_value()) << err;
  EXPECT_TRUE(ok->ok) << ok->invariant << ": " << ok->detail;
}

}  // namespace
}  // namespace mirrormmu::test
