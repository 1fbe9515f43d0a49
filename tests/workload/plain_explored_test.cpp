// SPDX-License-Identifier: MIT
// A plain VM's races under the explorer: every scenario explores clean on
// the model, and the classic bug of the memslot update protocol (a fault
// that does not hold the memslot read lock, so enabling dirty logging can
// write-protect before the fault's leaf lands) is found and replays.
#include <gtest/gtest.h>

#include <algorithm>

#include "explore/explorer.h"
#include "vm/plain_vm.h"
#include "workload/plain_explored.h"

namespace mirrormmu::test {
namespace {

explore::ExploreReport run(const std::string& source, explore::StrategyKind k, uint64_t budget, int preemptions = 1,
                           bool dpor = false) {
  register_plain_source();
  explore::ExploreConfig c;
  c.scenario = source;
  c.dpor = dpor;
  c.strategy = k;
  c.budget = budget;
  c.preemptions = preemptions;
  std::string error;
  auto rep = explore::explore(c, {}, &error);
  EXPECT_TRUE(rep.has_value()) << error;
  return rep ? *rep : explore::ExploreReport{};
}

TEST(PlainExplored, EveryScenarioExploresCleanOnTheModel) {
  for (const auto& s : plain_scenarios()) {
    const auto rep = run(plain_source_name("model", s.name), explore::StrategyKind::Pct, 40);
    EXPECT_TRUE(rep.ok()) << s.name << ": " << (rep.failures.empty() ? "" : rep.failures[0].result.detail);
    EXPECT_EQ(rep.executions, 40u) << s.name;
    EXPECT_GT(rep.classes.count(), 0u) << s.name << ": no SPTE change was seen";
  }
}

TEST(PlainExplored, FaultsOutsideTheMemslotLockLoseDirtyPages) {
  register_direct_mmu("model-planted-no-slots-lock", [](int n) -> std::unique_ptr<DirectMmu> {
    PlainVmConfig c{n};
    c.no_slots_lock_in_fault = true;
    return std::make_unique<PlainVm>(c);
  });
  const std::string source = plain_source_name("model-planted-no-slots-lock", "write-vs-dirty-log");
  const auto rep = run(source, explore::StrategyKind::Dfs, 600, 1);
  ASSERT_FALSE(rep.failures.empty()) << "the explorer missed the planted race";
  const auto& f = rep.failures[0];
  EXPECT_TRUE(f.result.invariant == "writable_leaf_not_logged" || f.result.invariant == "lost_dirty_page")
      << f.result.invariant << ": " << f.result.detail;
  // The shrunk schedule replays the same failure.
  std::string error;
  const auto again = explore::replay(f.schedule, &error);
  ASSERT_TRUE(again.has_value()) << error;
  EXPECT_EQ(again->invariant, f.result.invariant);
  // With the lock, the same search is clean.
  const auto clean = run(plain_source_name("model", "write-vs-dirty-log"), explore::StrategyKind::Dfs, 600, 1);
  EXPECT_TRUE(clean.ok());
  EXPECT_TRUE(clean.exhausted) << "every schedule at one preemption, in 600 executions";
}

TEST(PlainExplored, AFaultIntoAnInvalidatedRootIsFound) {
  register_direct_mmu("model-planted-no-stale-check", [](int n) -> std::unique_ptr<DirectMmu> {
    PlainVmConfig c{n};
    c.no_stale_root_check = true;
    return std::make_unique<PlainVm>(c);
  });
  const auto rep = run(plain_source_name("model-planted-no-stale-check", "fault-vs-fast-zap"),
                       explore::StrategyKind::Dfs, 3000, 1);
  ASSERT_FALSE(rep.failures.empty()) << "a leaf mapped into a dead root went unnoticed";
  EXPECT_FALSE(rep.failures[0].result.invariant.empty());
}

// The classic bug of each hardware-side mechanism planted in the model's
// plain VM (a missing flush, a fast zap without the reload request, a fault
// that ignores the notifier's sequence, a plain store where xchg was
// needed, fast_page_fault forgetting the dirty log): the explorer finds it
// on the scenario built for it, names the invariant, and the shrunk
// schedule replays it.
struct ClassicPlant {
  const char* mmu;
  void (*plant)(PlainVmConfig&);
  const char* scenario;
  std::vector<std::string> invariants;  // any of these
};

class PlainClassicPlant : public ::testing::TestWithParam<ClassicPlant> {};

TEST_P(PlainClassicPlant, IsFoundAndReplays) {
  const ClassicPlant& p = GetParam();
  // A factory cannot capture: it plants what the running test chose.
  static void (*plant)(PlainVmConfig&);
  plant = p.plant;
  register_direct_mmu(p.mmu, [](int n) -> std::unique_ptr<DirectMmu> {
    PlainVmConfig c{n};
    plant(c);
    return std::make_unique<PlainVm>(c);
  });
  const auto rep = run(plain_source_name(p.mmu, p.scenario), explore::StrategyKind::Dfs, 3000, 1);
  ASSERT_FALSE(rep.failures.empty()) << p.mmu << ": the explorer missed the planted bug";
  // DPOR leaves out branches no race asks for: never the one with the bug.
  const auto reduced = run(plain_source_name(p.mmu, p.scenario), explore::StrategyKind::Dfs, 3000, 1, true);
  ASSERT_FALSE(reduced.failures.empty()) << p.mmu << ": DPOR missed the planted bug";
  EXPECT_NE(std::find(p.invariants.begin(), p.invariants.end(), reduced.failures[0].result.invariant),
            p.invariants.end())
      << reduced.failures[0].result.invariant;
  EXPECT_LE(reduced.executions, rep.executions) << p.mmu;
  const auto& f = rep.failures[0];
  EXPECT_NE(std::find(p.invariants.begin(), p.invariants.end(), f.result.invariant), p.invariants.end())
      << f.result.invariant << ": " << f.result.detail;
  std::string error;
  const auto again = explore::replay(f.schedule, &error);
  ASSERT_TRUE(again.has_value()) << error;
  EXPECT_EQ(again->invariant, f.result.invariant) << f.schedule.str();
  // The correct model explores the same scenario clean.
  EXPECT_TRUE(run(plain_source_name("model", p.scenario), explore::StrategyKind::Dfs, 600, 1).ok()) << p.scenario;
}

INSTANTIATE_TEST_SUITE_P(
    Plants, PlainClassicPlant,
    ::testing::Values(
        ClassicPlant{"model-planted-no-flush-after-zap", [](PlainVmConfig& c) { c.no_flush_after_zap = true; },
                 "access-vs-zap", {"tlb_stale", "tlb_use_after_free"}},
        ClassicPlant{"model-planted-no-flush-after-dirty-log", [](PlainVmConfig& c) { c.no_flush_after_dirty_log = true; },
                 "write-vs-log-collect", {"tlb_stale", "lost_dirty_page"}},
        ClassicPlant{"model-planted-no-reload-request",
                 [](PlainVmConfig& c) { c.no_reload_request_in_fast_zap = true; }, "access-vs-fast-zap",
                 {"tlb_table_freed", "tlb_use_after_free", "tlb_stale"}},
        ClassicPlant{"model-planted-no-invalidate-retry", [](PlainVmConfig& c) { c.no_invalidate_retry = true; },
                     "notifier-vs-fault", {"leaf_pfn", "tlb_use_after_free"}},
        ClassicPlant{"model-planted-plain-store-fast-pf",
                     [](PlainVmConfig& c) { c.plain_store_over_volatile = true; }, "fast-pf-vs-zap", {"lost_update"}},
        ClassicPlant{"model-planted-plain-store-accessed",
                     [](PlainVmConfig& c) { c.plain_store_over_volatile = true; }, "walk-vs-age-zap", {"lost_update"}},
        ClassicPlant{"model-planted-prefault-retries-invalid-slot",
                     [](PlainVmConfig& c) { c.prefault_retries_invalid_slot = true; }, "prefault-vs-delete",
                     {"livelock", "deadlock", "prefault_failed"}},
        ClassicPlant{"model-planted-recovery-without-flush",
                     [](PlainVmConfig& c) { c.zap_atomic_no_flush = true; }, "fault-vs-recover",
                     {"tlb_table_freed", "tlb_stale", "tlb_use_after_free"}},
        ClassicPlant{"model-planted-age-plain-store", [](PlainVmConfig& c) { c.age_plain_store = true; },
                     "age-vs-zap", {"page_stats", "leaf_pfn", "tlb_stale"}},
        ClassicPlant{"model-planted-nx-recovery-no-flush", [](PlainVmConfig& c) { c.nx_recovery_no_flush = true; },
                     "exec-vs-nx-recover", {"tlb_stale", "tlb_table_freed", "tlb_use_after_free"}},
        ClassicPlant{"model-planted-fast-pf-no-log", [](PlainVmConfig& c) { c.fast_pf_no_mark_dirty = true; },
                     "write-vs-log-collect", {"lost_dirty_page", "writable_leaf_not_logged"}}),
    [](const auto& info) {
      std::string n = info.param.mmu;
      n = n.substr(std::string("model-planted-").size());
      std::replace(n.begin(), n.end(), '-', '_');
      return n;
    });

TEST(PlainExplored, ABadNameIsRefusedWithTheChoices) {
  register_plain_source();
  std::string error;
  EXPECT_FALSE(explore::resolve_source("plain:model:nosuch", 1, "upstream", &error).has_value());
  EXPECT_NE(error.find("fault-vs-fast-zap"), std::string::npos) << error;
  EXPECT_FALSE(explore::resolve_source("plain:nosuch:fault-fault", 1, "upstream", &error).has_value());
  EXPECT_NE(error.find("no MMU named 'nosuch'"), std::string::npos) << error;
}

}  // namespace
}  // namespace mirrormmu::test
