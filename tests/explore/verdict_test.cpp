// SPDX-License-Identifier: MIT
// Verdicts: a site that fires anywhere fails the run or the execution, even
// when it fires during teardown, where the old checker no longer looked.
#include <gtest/gtest.h>

#include "explore/explorer.h"
#include "mmu/designs/designs.h"
#include "mmu/mmu_page.h"
#include "mmu/tdp_mmu.h"
#include "vm/vm.h"
#include "workload/runner.h"

namespace mirrormmu::test {
namespace {

// upstream with a WARN planted where only teardown goes: removing a table of
// 1G entries, which the small workloads here only do when the mirror root
// itself is zapped by kvm_mmu_uninit_tdp_mmu().
class WarnInTeardownDesign final : public HookDesign {
 public:
  WarnInTeardownDesign() : base_(make_upstream_design()) {}
  std::string_view name() const override { return "test-warn-in-teardown"; }
  ExternalLayout external_layout() const override { return base_->external_layout(); }
  int set_spte_atomic_mirror(TdpMmu& m, TdpIter& it, uint64_t s) override { return base_->set_spte_atomic_mirror(m, it, s); }
  int propagate_changed_spte(TdpMmu& m, Gfn g, uint64_t o, uint64_t n, PgLevel l, bool sh) override {
    return base_->propagate_changed_spte(m, g, o, n, l, sh);
  }
  int propagate_removed_table(TdpMmu& m, Gfn g, uint64_t o, uint64_t n, PgLevel l, bool sh) override {
    return base_->propagate_removed_table(m, g, o, n, l, sh);
  }
  void after_set_spte_mirror(TdpMmu& m, Gfn g, uint64_t o, uint64_t n, PgLevel l) override {
    base_->after_set_spte_mirror(m, g, o, n, l);
  }
  void removed_child_mirror(TdpMmu& m, Gfn g, uint64_t o, PgLevel l, bool sh) override {
    base_->removed_child_mirror(m, g, o, l, sh);
  }
  void removed_pt_mirror(TdpMmu& m, MmuPage& sp) override {
    warn_on_once(sp.role.level >= PgLevel::k1G, m.kvm(), Site::free_external_spt_failed);
    base_->removed_pt_mirror(m, sp);
  }

 private:
  std::unique_ptr<HookDesign> base_;
};

void register_warn_in_teardown() {
  static bool done = false;
  if (done) return;
  done = true;
  register_design({"test-warn-in-teardown", "a planted bug", "upstream with a WARN in mirror root teardown",
                   [] { return std::unique_ptr<HookDesign>(new WarnInTeardownDesign()); }});
}

TEST(Verdict, AWarnInTeardownFailsTheRun) {
  register_warn_in_teardown();
  WorkloadConfig c;
  c.design = "test-warn-in-teardown";
  c.gib = 0.0625;
  c.threads = false;
  const RunOutcome out = run_workload(c);
  EXPECT_FALSE(out.result.ok);
  EXPECT_EQ(out.result.exit_code, 1);
  ASSERT_FALSE(out.checker->violations().empty());
  const Violation& v = out.checker->violations().front();
  EXPECT_EQ(v.invariant, "bug_site");
  EXPECT_NE(v.detail.find("free_external_spt_failed"), std::string::npos) << v.detail;
  EXPECT_NE(v.detail.find("during teardown"), std::string::npos) << v.detail;

  // The same workload on the design as merged is clean.
  c.design = "upstream";
  EXPECT_TRUE(run_workload(c).result.ok);
}

TEST(Verdict, AWarnInTeardownFailsEveryExecution) {
  register_warn_in_teardown();
  explore::ExploreConfig cfg;
  cfg.scenario = "fault-vs-convert";
  cfg.design = "test-warn-in-teardown";
  cfg.strategy = explore::StrategyKind::Random;
  cfg.budget = 5;
  cfg.shrink = false;
  std::string err;
  const auto rep = explore::explore(cfg, nullptr, &err);
  ASSERT_TRUE(rep.has_value()) << err;
  ASSERT_FALSE(rep->failures.empty());
  EXPECT_EQ(rep->failures.front().result.invariant, "bug_site");
  EXPECT_EQ(rep->sites[static_cast<size_t>(Site::free_external_spt_failed)], rep->executions);
}

TEST(Verdict, TheReportCountsTheInjectionsThatFiredPerKind) {
  explore::ExploreConfig cfg;
  cfg.scenario = "fault-fault-2m";
  cfg.strategy = explore::StrategyKind::Random;
  cfg.budget = 40;
  cfg.shrink = false;
  std::string err;
  const auto none = explore::explore(cfg, nullptr, &err);
  ASSERT_TRUE(none.has_value()) << err;
  for (uint64_t n : none->fired) EXPECT_EQ(n, 0u);  // no budget, nothing injected

  cfg.fail_budget[static_cast<size_t>(sync::FailKind::SeamcallBusy)] = 1;
  const auto busy = explore::explore(cfg, nullptr, &err);
  ASSERT_TRUE(busy.has_value()) << err;
  const size_t k = static_cast<size_t>(sync::FailKind::SeamcallBusy);
  EXPECT_GT(busy->fired[k], 0u);
  EXPECT_LE(busy->fired[k], busy->executions);  // a budget of one per execution
  EXPECT_EQ(busy->fired[k], busy->executions_with_fired[k]);
  EXPECT_EQ(busy->fired[static_cast<size_t>(sync::FailKind::TopupNoMem)], 0u);
}

TEST(Verdict, TracesMarkInjectedResults) {
  explore::ExploreConfig cfg;
  cfg.scenario = "fault-fault-2m";
  cfg.strategy = explore::StrategyKind::Random;
  cfg.budget = 1;
  cfg.shrink = false;
  cfg.fail_budget[static_cast<size_t>(sync::FailKind::SeamcallBusy)] = 1;
  const size_t k = static_cast<size_t>(sync::FailKind::SeamcallBusy);
  std::string err;
  for (uint64_t seed = 1; seed < 50; seed++) {
    cfg.seed = seed;
    const auto rep = explore::explore(cfg, nullptr, &err);
    ASSERT_TRUE(rep.has_value()) << err;
    if (rep->fired[k] == 0) continue;
    const auto r = explore::replay(rep->last, &err);
    ASSERT_TRUE(r.has_value()) << err;
    const std::string trace = explore::format_trace(*r);
    EXPECT_NE(trace.find("TDX_OPERAND_BUSY"), std::string::npos) << trace;
    EXPECT_NE(trace.find("(injected)"), std::string::npos) << trace;
    return;
  }
  FAIL() << "no execution in 49 seeds injected a BUSY";
}

// Teardown is part of the explored region: a BUSY on the retry KVM assumes
// cannot fail, injected while the TD is destroyed, is found and blamed on
// teardown; the trace carries setup, teardown and every RCU event.
TEST(Verdict, TeardownIsExploredWithInjectionLive) {
  explore::ExploreConfig cfg;
  cfg.scenario = "fault-vs-convert";
  cfg.preemptions = 0;
  cfg.budget = 300;
  cfg.shrink = false;
  cfg.max_failures = 100;
  cfg.fail_budget[static_cast<size_t>(sync::FailKind::SeamcallBusy)] = 1;
  cfg.fail_budget[static_cast<size_t>(sync::FailKind::RetryBusy)] = 1;
  std::vector<explore::Schedule> in_teardown;
  cfg.on_execution = [&](const explore::ExecResult& r, const explore::Schedule& s) {
    if (!r.ok && r.where == "teardown" && r.invariant == "bug_site") in_teardown.push_back(s);
  };
  std::string err;
  const auto rep = explore::explore(cfg, nullptr, &err);
  ASSERT_TRUE(rep.has_value()) << err;
  EXPECT_FALSE(rep->ok());
  ASSERT_FALSE(in_teardown.empty());
  const auto r = explore::replay(in_teardown.front(), &err);
  ASSERT_TRUE(r.has_value()) << err;
  EXPECT_EQ(r->where, "teardown");
  const std::string trace = explore::format_trace(*r);
  for (const char* want : {"setup    thread starts", "teardown thread starts", "rcu_read_lock", "call_rcu #1",
                           "grace period over for call_rcu #1", "(injected)"})
    EXPECT_NE(trace.find(want), std::string::npos) << want;
  // Without the opt-in, the retry never fails.
  cfg.fail_budget[static_cast<size_t>(sync::FailKind::RetryBusy)] = 0;
  cfg.on_execution = nullptr;
  const auto plain = explore::explore(cfg, nullptr, &err);
  ASSERT_TRUE(plain.has_value()) << err;
  EXPECT_TRUE(plain->ok());
}

}  // namespace
}  // namespace mirrormmu::test
