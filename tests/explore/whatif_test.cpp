// SPDX-License-Identifier: MIT
// Each what-if switch shows the failure it exists to show, and the code as
// posted stays clean on the same search: the livelock of a fault against
// memslot deletion without TDX's bail-out, option 2's reclaim after call_rcu
// without the RCU read lock, and promotion on the mirror. Mixed S-EPT page
// sources (seed 003) stay clean, because ownership passes to the sp at
// hand-out.
#include <gtest/gtest.h>

#include "explore/explorer.h"
#include "vm/vm.h"
#include "workload/runner.h"

namespace mirrormmu::test {
namespace {

explore::ExploreConfig random_search(std::string scenario, std::string design, uint64_t budget) {
  explore::ExploreConfig cfg;
  cfg.scenario = std::move(scenario);
  cfg.design = std::move(design);
  cfg.strategy = explore::StrategyKind::Random;
  cfg.budget = budget;
  cfg.seed = 1;
  cfg.shrink = false;
  // A livelocked execution runs to the step limit; a tenth of the default is
  // still far beyond any execution that makes progress here.
  cfg.max_steps = 200'000;
  return cfg;
}

TEST(WhatIf, WithoutTheMemslotInvalidBailOutAFaultLivelocksTheDeletion) {
  std::string err;
  const auto bad = explore::explore(random_search("fault-vs-delete", "upstream+no-memslot-invalid-bailout", 40),
                                    nullptr, &err);
  ASSERT_TRUE(bad.has_value()) << err;
  ASSERT_FALSE(bad->failures.empty()) << "no livelock found in " << bad->executions << " executions";
  const explore::Failure& f = bad->failures.front();
  EXPECT_EQ(f.result.invariant, "livelock") << f.result.detail;
  EXPECT_NE(f.schedule.str().find("+no-memslot-invalid-bailout"), std::string::npos) << f.schedule.str();

  // The same search on the code as merged: the vCPU drops SRCU and the
  // deletion completes.
  const auto good = explore::explore(random_search("fault-vs-delete", "upstream", 300), nullptr, &err);
  ASSERT_TRUE(good.has_value()) << err;
  for (const auto& g : good->failures)
    ADD_FAILURE() << g.result.invariant << ": " << g.result.detail << "\n  replay: " << g.schedule.str();

  // And the failing schedule itself, replayed without the switch, is clean.
  explore::Schedule fixed = f.schedule;
  fixed.design = "upstream";
  const auto r = explore::replay(fixed, &err);
  ASSERT_TRUE(r.has_value()) << err;
  EXPECT_TRUE(r->ok) << r->invariant << ": " << r->detail;
}

uint64_t site_executions(const explore::ExploreReport& r, Site s) { return r.sites[static_cast<size_t>(s)]; }

TEST(WhatIf, OptionTwoWithoutTheRcuReadLockFreesTheTableBeforeItsReclaim) {
  std::string err;
  for (const char* design : {"upstream-rcu", "single-hook"}) {
    SCOPED_TRACE(design);
    const auto ok = explore::explore(random_search("fault-vs-teardown", design, 10), nullptr, &err);
    ASSERT_TRUE(ok.has_value()) << err;
    EXPECT_EQ(site_executions(*ok, Site::reclaim_without_rcu), 0u);
    EXPECT_EQ(site_executions(*ok, Site::free_sp_external_live), 0u);

    const auto bad =
        explore::explore(random_search("fault-vs-teardown", std::string(design) + "+no-rcu-in-zap", 10), nullptr, &err);
    ASSERT_TRUE(bad.has_value()) << err;
    // RCU_LOCKDEP_WARN in the reclaim, and the RCU callback finding an S-EPT
    // page the module still holds: the grace period ended in between.
    EXPECT_EQ(site_executions(*bad, Site::reclaim_without_rcu), bad->executions);
    EXPECT_EQ(site_executions(*bad, Site::free_sp_external_live), bad->executions);
  }
}

TEST(WhatIf, TheMergedLayerDoesNotRelyOnRcuForItsReclaim) {
  // free_external_spt runs before call_rcu and frees at once: dropping the
  // read lock changes nothing.
  std::string err;
  const auto r = explore::explore(random_search("fault-vs-teardown", "upstream+no-rcu-in-zap", 10), nullptr, &err);
  ASSERT_TRUE(r.has_value()) << err;
  EXPECT_EQ(site_executions(*r, Site::free_sp_external_live), 0u);
  for (const auto& f : r->failures) ADD_FAILURE() << f.result.invariant << ": " << f.result.detail;
}

WorkloadConfig small_huge_life(const char* design) {
  WorkloadConfig c;
  c.design = design;
  c.gib = 0.0625;
  c.huge_pages = true;
  c.threads = false;
  return c;
}

TEST(WhatIf, PromotionOnTheMirrorLeavesTheVcpuUnableToFaultIn) {
  // The MMU refuses the table -> 2M leaf change under the shared lock
  // (-EOPNOTSUPP), so a fault that insists on it retries until the vCPU
  // gives up: promotion needs a path the S-EPT does not have.
  WorkloadConfig c = small_huge_life("hugepage-v5");
  c.what_if.mirror_promotion = true;
  const RunOutcome bad = run_workload(c);
  EXPECT_FALSE(bad.result.ok);
  EXPECT_EQ(bad.result.exit_code, 1);

  WorkloadConfig plain = small_huge_life("hugepage-v5");
  const RunOutcome good = run_workload(plain);
  EXPECT_TRUE(good.result.ok) << good.result.error;
}

TEST(WhatIf, PromotionNeedsHugePagesAndADesignThatMapsThem) {
  VmConfig v;
  v.what_if.mirror_promotion = true;
  EXPECT_NE(vm_config_refusal(v).find("needs --huge-pages"), std::string::npos);
  v.huge_pages = true;
  v.design = "upstream";
  EXPECT_FALSE(vm_config_refusal(v).empty());
  v.design = "hugepage-v5";
  EXPECT_EQ(vm_config_refusal(v), "");
}

TEST(WhatIf, MixedExternalSptSourcesStayClean) {
  // Seed 003: fault tables from TDX's pool, split tables from a fresh page,
  // all freed by the MMU. Both sources are used, and every page comes back.
  WorkloadConfig c = small_huge_life("hugepage-v5");
  c.external_spt_policy = ExternalSptPolicy::Mixed;
  const RunOutcome out = run_workload(c);
  ASSERT_TRUE(out.result.ok) << out.result.error;
  const auto flow = out.vm->pool().flow(PageOwner::SeptPage);
  EXPECT_GT(flow.allocated, 0u);       // split tables: a fresh page each
  EXPECT_GT(flow.transferred_in, 0u);  // fault tables: handed over from TDX's pool
  EXPECT_EQ(flow.allocated + flow.transferred_in, flow.freed + flow.transferred_out);
  EXPECT_EQ(out.checker->pages_leaked(), 0u);
}

TEST(WhatIf, RemovingWithoutWbinvdHandsTheHostDirtyCacheLines) {
  // td-life converts private memory to shared and back: guest_memfd frees
  // each removed page. Without the WBINVD after REMOVE the checker sees a
  // page go to the host with lines of the TD's key still in the cache.
  WorkloadConfig c;
  c.gib = 0.0625;
  c.threads = false;
  c.what_if.no_wbinvd = true;
  const RunOutcome bad = run_workload(c);
  EXPECT_FALSE(bad.result.ok);
  bool found = false;
  for (const auto& v : bad.checker->violations()) found |= v.invariant == "cache_not_written_back";
  EXPECT_TRUE(found) << bad.checker->describe();

  c.what_if.no_wbinvd = false;
  const RunOutcome good = run_workload(c);
  EXPECT_TRUE(good.result.ok) << good.result.error;
}

// Yan Zhao's race, closed by "Guard VM state transitions with all the
// locks": without them a finalize lands between a PAGE.ADD and its
// MR.EXTEND, and the measurement step fails. DFS at two preemptions covers
// every schedule either way.
TEST(WhatIf, FinalizeRacesTheInitialImageWithoutTheStateLocks) {
  for (const bool planted : {false, true}) {
    explore::ExploreConfig cfg;
    cfg.scenario = "add-vs-finalize";
    cfg.design = planted ? "upstream+no-vm-state-locks" : "upstream";
    cfg.preemptions = 2;
    cfg.budget = 5000;
    cfg.shrink = false;
    std::string err;
    const auto rep = explore::explore(cfg, nullptr, &err);
    ASSERT_TRUE(rep.has_value()) << err;
    EXPECT_TRUE(rep->exhausted);
    EXPECT_EQ(rep->ok(), !planted);
    if (planted) {
      ASSERT_FALSE(rep->failures.empty());
      EXPECT_NE(rep->failures.front().result.detail.find("tdh_mr_extend"), std::string::npos)
          << rep->failures.front().result.detail;
    }
  }
}

TEST(WhatIf, SpecsParseAndNameTheBadPart) {
  std::string design, err;
  WhatIf w;
  ASSERT_TRUE(parse_design_spec("upstream+no-rcu-in-zap+mirror-promotion", &design, &w, &err)) << err;
  EXPECT_EQ(design, "upstream");
  EXPECT_TRUE(w.no_rcu_in_zap && w.mirror_promotion && !w.no_memslot_invalid_bailout);
  EXPECT_EQ(design_spec(design, w), "upstream+no-rcu-in-zap+mirror-promotion");
  EXPECT_FALSE(parse_design_spec("upstream+nope", &design, &w, &err));
  EXPECT_NE(err.find("'nope'"), std::string::npos) << err;
  EXPECT_FALSE(parse_design_spec("nope", &design, &w, &err));
  EXPECT_NE(err.find("valid: upstream"), std::string::npos) << err;
}

}  // namespace
}  // namespace mirrormmu::test

namespace mirrormmu::test {
namespace {

// kvm_mmu_zap_all_fast() as it was before TDX, taking every root: the
// explorer names the mirror root invalidated under a live TD, with a replay
// string; the code as merged explores the same race clean.
TEST(WhatIf, AFastZapThatTakesTheMirrorRootIsFound) {
  std::string err;
  explore::ExploreConfig cfg;
  cfg.scenario = "fault-vs-fast-zap";
  cfg.design = "upstream+fast-zap-mirror";
  cfg.budget = 20;
  const auto bad = explore::explore(cfg, nullptr, &err);
  ASSERT_TRUE(bad.has_value()) << err;
  ASSERT_FALSE(bad->failures.empty()) << "the mirror root's invalidation went unnoticed";
  EXPECT_EQ(bad->failures.front().result.invariant, "mirror_root_invalidated") << bad->failures.front().result.detail;
  cfg.dpor = true;
  const auto reduced = explore::explore(cfg, nullptr, &err);
  ASSERT_TRUE(reduced.has_value()) << err;
  ASSERT_FALSE(reduced->failures.empty()) << "DPOR missed the mirror root's invalidation";
  EXPECT_EQ(reduced->failures.front().result.invariant, "mirror_root_invalidated");
  cfg.dpor = false;
  const auto again = explore::replay(bad->failures.front().schedule, &err);
  ASSERT_TRUE(again.has_value()) << err;
  EXPECT_EQ(again->invariant, "mirror_root_invalidated");
  cfg.design = "upstream";
  cfg.budget = 60;
  const auto good = explore::explore(cfg, nullptr, &err);
  ASSERT_TRUE(good.has_value()) << err;
  for (const auto& g : good->failures)
    ADD_FAILURE() << g.result.invariant << ": " << g.result.detail << "\n  replay: " << g.schedule.str();
}

// The hardware's classic bugs on a TD, each found by the explorer with a
// replay string that reproduces it, and absent from the correct code.
struct HwPlant {
  const char* scenario;
  const char* what_if;
  const char* invariant;
};

class TdHardwarePlant : public ::testing::TestWithParam<HwPlant> {};

TEST_P(TdHardwarePlant, IsFoundAndReplays) {
  const HwPlant& p = GetParam();
  std::string err;
  explore::ExploreConfig cfg;
  cfg.scenario = p.scenario;
  cfg.design = std::string("upstream+") + p.what_if;
  cfg.budget = 60;
  const auto bad = explore::explore(cfg, nullptr, &err);
  ASSERT_TRUE(bad.has_value()) << err;
  ASSERT_FALSE(bad->failures.empty()) << p.what_if << " went unnoticed";
  {
    explore::ExploreConfig d = cfg;
    d.dpor = true;
    const auto reduced = explore::explore(d, nullptr, &err);
    ASSERT_TRUE(reduced.has_value()) << err;
    ASSERT_FALSE(reduced->failures.empty()) << p.what_if << " went unnoticed by DPOR";
    EXPECT_EQ(reduced->failures.front().result.invariant, p.invariant);
  }
  EXPECT_EQ(bad->failures.front().result.invariant, p.invariant) << bad->failures.front().result.detail;
  const auto again = explore::replay(bad->failures.front().schedule, &err);
  ASSERT_TRUE(again.has_value()) << err;
  EXPECT_EQ(again->invariant, p.invariant);
  cfg.design = "upstream";
  const auto good = explore::explore(cfg, nullptr, &err);
  ASSERT_TRUE(good.has_value()) << err;
  for (const auto& g : good->failures)
    ADD_FAILURE() << g.result.invariant << ": " << g.result.detail << "\n  replay: " << g.schedule.str();
}

INSTANTIATE_TEST_SUITE_P(
    Td, TdHardwarePlant,
    ::testing::Values(
        // A shared translation outlives the conversion that took the page.
        HwPlant{"convert-both-ways", "no-flush-after-unmap", "tlb_stale"},
        // TRACK without the kick, on a module that does not count vCPUs: a
        // vCPU in the guest keeps translating a page REMOVE gave back.
        HwPlant{"fault-vs-convert", "lax-tlb-tracking,no-kick-after-track", "tlb_use_after_free"},
        // TRACK without the kick on the real module: it refuses, and KVM's
        // TDX_BUG_ON says so.
        HwPlant{"fault-vs-convert", "no-kick-after-track", "bug_site"}),
    [](const auto& info) {
      std::string n = std::string(info.param.scenario) + "_" + info.param.what_if;
      for (char& c : n)
        if (c == '-' || c == ',') c = '_';
      return n;
    });

}  // namespace
}  // namespace mirrormmu::test
