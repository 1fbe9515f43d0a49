// SPDX-License-Identifier: MIT
#include <gtest/gtest.h>

#include <cerrno>
#include <iostream>

#include "explore/explorer.h"
#include "mmu/designs/designs.h"
#include "mmu/tdp_mmu.h"
#include "spte/spte.h"
#include "sync/spte_atomic.h"
#include "mem/pfn_pool.h"
#include "sync/rcu.h"
#include "sync/sched.h"

namespace mirrormmu::test {
namespace {

using namespace explore;

// ---- a tiny harness with a planted lost update ------------------------------

// Two threads add to one counter through the SPTE accessors (so every access
// is a scheduling point). `atomic` uses a cmpxchg loop; otherwise a read and
// a store: the classic lost update.
bool counter_run(sync::DetStrategy& strat, bool atomic, Choices* taken) {
  uint64_t counter = 0;
  sync::DetEngine e(strat, {});
  for (int t = 0; t < 2; t++)
    e.spawn("t" + std::to_string(t), [&] {
      if (atomic) {
        uint64_t old = sync::read_spte(&counter);
        while (!sync::cmpxchg_spte(&counter, old, old + 1)) {}
      } else {
        const uint64_t v = sync::read_spte(&counter);
        sync::write_spte(&counter, v + 1);
      }
    });
  EXPECT_TRUE(e.run());
  if (taken) {
    taken->clear();
    const auto& log = e.decision_log();
    for (size_t i = 0; i < log.size(); i++)
      if (log[i].chosen) (*taken)[i] = log[i].chosen;
  }
  return counter == 2;
}

// First failing schedule of a DFS with the given preemption bound.
std::optional<Choices> dfs_find(bool atomic, int bound, int* executions, bool* exhausted) {
  DfsStrategy dfs(bound);
  *executions = 0;
  for (;;) {
    ++*executions;
    Choices c;
    if (!counter_run(dfs, atomic, &c)) return c;
    if (!dfs.next()) {
      *exhausted = true;
      return std::nullopt;
    }
  }
}

TEST(Explorer, DfsFindsAPlantedLostUpdateEveryTime) {
  int n1 = 0, n2 = 0;
  bool ex = false;
  const auto a = dfs_find(false, 1, &n1, &ex);
  const auto b = dfs_find(false, 1, &n2, &ex);
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(*a, *b);  // deterministic: same schedule, same number of runs
  EXPECT_EQ(n1, n2);
  // The schedule replays the failure.
  ReplayStrategy r(*a);
  EXPECT_FALSE(counter_run(r, false, nullptr));
  // Without a preemption it cannot happen: the bound matters.
  bool exhausted = false;
  int n0 = 0;
  EXPECT_FALSE(dfs_find(false, 0, &n0, &exhausted).has_value());
  EXPECT_TRUE(exhausted);
}

TEST(Explorer, DfsExploresTheCorrectVersionCleanly) {
  int n = 0;
  bool exhausted = false;
  EXPECT_FALSE(dfs_find(true, 2, &n, &exhausted).has_value());
  EXPECT_TRUE(exhausted);
  EXPECT_GT(n, 3);  // it did branch
}

// Two threads spin (cond_resched_spin, as tdp_mmu_iter_cond_resched and a
// BUSY retry loop do) until a third publishes a flag. The classic bug of a
// spin yield is to hand the baton to the lowest-numbered runnable thread:
// the two spinners then pass it to each other for ever and the publisher
// never runs, a livelock no real scheduler makes. The yield goes to the
// thread that waited longest instead, and it is not a decision, so the
// search does not grow with the number of turns of the loop.
TEST(Explorer, SpinnersYieldingToEachOtherDoNotStarveAThirdThread) {
  for (const int bound : {0, 1, 2}) {
    DfsStrategy dfs(bound);
    int executions = 0;
    do {
      uint64_t flag = 0;
      sync::DetLimits lim;
      lim.max_steps = 10'000;
      sync::DetEngine e(dfs, lim);
      for (int t = 0; t < 2; t++)
        e.spawn("spin" + std::to_string(t), [&] {
          while (!sync::read_spte(&flag)) sync::cond_resched_spin(&flag);
        });
      e.spawn("publisher", [&] {
        for (int i = 0; i < 3; i++) sync::read_spte(&flag);
        sync::write_spte(&flag, 1);
      });
      ASSERT_TRUE(e.run()) << "bound " << bound << ", execution " << executions << ": " << e.abort_reason();
      EXPECT_LT(e.decisions(), 64u) << "a spin turn became a decision";
      ++executions;
    } while (dfs.next() && executions < 5000);
    EXPECT_LT(executions, 5000) << "bound " << bound << " did not finish: spinning grows the tree";
  }
}

TEST(Explorer, PctAndRandomFindTheLostUpdate) {
  int found_pct = 0, found_rnd = 0;
  for (uint64_t seed = 1; seed <= 50; seed++) {
    PctStrategy pct(seed, 2, 8, 2, 0);
    found_pct += !counter_run(pct, false, nullptr);
    RandomStrategy rnd(seed, 0);
    found_rnd += !counter_run(rnd, false, nullptr);
  }
  EXPECT_GT(found_pct, 0);
  EXPECT_GT(found_rnd, 0);
}

// A reader that keeps using a page table after leaving its read-side
// section, while another thread unlinks it and frees it through call_rcu:
// the grace period ends at the reader's unlock, and the reader's next access
// is reported. Inside the section the same access is fine.
struct RcuHarness {
  PfnPool pool{1024};
  Pfn table = pool.alloc(PageOwner::PageTable, true);
  uint64_t* spt = pool.page_ptr(table);
  sync::RcuHead head{};
  static PfnPool* g_pool;
  static Pfn g_table;
  static void free_cb(sync::RcuHead*) { g_pool->free(g_table, PageOwner::PageTable); }

  std::vector<std::string> run(bool use_after_unlock) {
    g_pool = &pool;
    g_table = table;
    sync::write_spte(spt, spte::kNonPresent);
    ReplayStrategy def({});
    sync::DetEngine e(def, {});
    bool queued = false;
    e.spawn("reader", [&] {
      sync::rcu_read_lock();
      sync::read_spte(spt);
      while (!queued) sync::wait_event(&queued);  // the writer unlinks and queues meanwhile
      sync::read_spte(spt);
      sync::rcu_read_unlock();
      if (use_after_unlock) sync::read_spte(spt);
    });
    e.spawn("writer", [&] {
      sync::call_rcu(&head, &free_cb);
      queued = true;
      sync::wake_event(&queued);
    });
    EXPECT_TRUE(e.run());
    return e.violations();
  }
};
PfnPool* RcuHarness::g_pool = nullptr;
Pfn RcuHarness::g_table;

TEST(Explorer, UseAfterTheGracePeriodIsReported) {
  {
    RcuHarness h;
    EXPECT_TRUE(h.run(false).empty());
    EXPECT_EQ(h.pool.in_use(), 0u);  // freed once the reader left
  }
  {
    RcuHarness h;
    const auto v = h.run(true);
    ASSERT_EQ(v.size(), 1u);
    EXPECT_NE(v[0].find("reader"), std::string::npos);
  }
}

TEST(Explorer, ChoicesRoundTripThroughTheirString) {
  const Choices c{{3, 1}, {17, 2}, {400, 1}};
  EXPECT_EQ(encode_choices(c), "3.1-17.2-400.1");
  EXPECT_EQ(decode_choices("3.1-17.2-400.1"), c);
  EXPECT_EQ(decode_choices("0"), Choices{});
  EXPECT_FALSE(decode_choices("3.").has_value());
  EXPECT_FALSE(decode_choices("x.1").has_value());
  std::string err;
  auto s = Schedule::parse("fault-fault-2m/baseline/s2/f1,0,2,0/3.1-17.2", &err);
  ASSERT_TRUE(s.has_value()) << err;
  EXPECT_EQ(s->str(), "fault-fault-2m/baseline/s2/f1,0,2,0/3.1-17.2");
  EXPECT_FALSE(Schedule::parse("nonsense", &err).has_value());
  EXPECT_FALSE(Schedule::parse("a/b/s0x/f0,0,0,0/0", &err).has_value());
  // Failure points are named by kind and ordinal; budgets past the fourth
  // are printed only when set.
  const Choices k{{sync::thread_key(5), 1}, {sync::fail_key(sync::FailKind::SeamcallBusy, 2), 1},
                  {sync::fail_key(sync::FailKind::SeamcallError, 0), 3}};
  EXPECT_EQ(encode_choices(k), "5.1-b2.1-e0.3");
  EXPECT_EQ(decode_choices("5.1-b2.1-e0.3"), k);
  EXPECT_FALSE(decode_choices("z2.1").has_value());
  auto e = Schedule::parse("accept-4k-vs-2m/hugepage-v5/s2/f0,0,0,0,1/e13.1", &err);
  ASSERT_TRUE(e.has_value()) << err;
  EXPECT_EQ(e->fail_budget[4], 1u);
  EXPECT_EQ(e->str(), "accept-4k-vs-2m/hugepage-v5/s2/f0,0,0,0,1/e13.1");
  EXPECT_FALSE(Schedule::parse("a/b/s1/f0,0,0/0", &err).has_value());
  EXPECT_FALSE(Schedule::parse("a/b/s1/f0,0,0,0,0,0,0,0,0,0/0", &err).has_value());
}

// A failure found with every budget shrinks to the budgets its choices use,
// and the shrunk string reproduces with those or with any larger budgets:
// adding a budget does not renumber the decisions it names.
TEST(Explorer, ShrunkBudgetsStillReproduce) {
  ExploreConfig cfg;
  cfg.scenario = "fault-vs-convert";
  cfg.design = "centralized-rfc";
  cfg.fail_budget = {1, 1, 1, 0};
  cfg.budget = 400;
  std::string err;
  auto rep = explore::explore(cfg, nullptr, &err);
  ASSERT_TRUE(rep.has_value()) << err;
  ASSERT_FALSE(rep->failures.empty());
  const Failure& f = rep->failures.front();
  std::array<uint32_t, sync::kFailKindCount> used{};
  for (const auto& [key, v] : f.schedule.choices)
    if (sync::is_fail_key(key)) used[static_cast<size_t>(sync::key_fail_kind(key))]++;
  EXPECT_EQ(f.schedule.fail_budget, used) << f.schedule.str();
  for (uint32_t extra : {0u, 1u, 2u}) {
    Schedule s = f.schedule;
    for (auto& b : s.fail_budget) b += extra;
    auto r = explore::replay(s, &err);
    ASSERT_TRUE(r.has_value()) << err;
    EXPECT_EQ(r->invariant, f.result.invariant) << s.str();
  }
}

// ---- the built-in scenarios on the correct code -----------------------------

// Every built-in scenario under every design. A scenario that needs private
// huge pages is refused by a design that cannot split them, clearly.
struct ScenarioDesign {
  std::string scenario, design;
};

void PrintTo(const ScenarioDesign& p, std::ostream* os) { *os << p.scenario << " under " << p.design; }

class BuiltinScenario : public ::testing::TestWithParam<ScenarioDesign> {};

TEST_P(BuiltinScenario, ExploresCleanWithFailuresInjected) {
  const auto& [scenario, design] = GetParam();
  std::string err;
  const auto sc = load_scenario(scenario, 1, &err);
  ASSERT_TRUE(sc.has_value()) << err;
  const bool refused = sc->huge_pages && !find_design(design)->make()->supports_mirror_huge();
  for (StrategyKind st : {StrategyKind::Dfs, StrategyKind::Random}) {
    ExploreConfig cfg;
    cfg.scenario = scenario;
    cfg.design = design;
    cfg.strategy = st;
    cfg.budget = 40;
    cfg.scale = 1;
    cfg.fail_budget = {1, 1, 1, 1};
    auto rep = explore::explore(cfg, nullptr, &err);
    if (refused) {
      EXPECT_FALSE(rep.has_value());
      EXPECT_NE(err.find("cannot map private huge pages"), std::string::npos) << err;
      return;
    }
    ASSERT_TRUE(rep.has_value()) << err;
    EXPECT_EQ(rep->executions, 40u);
    for (const auto& f : rep->failures)
      ADD_FAILURE() << f.result.invariant << ": " << f.result.detail << "\n  replay: " << f.schedule.str();
    EXPECT_GE(rep->classes.count(), 2u);
  }
}

std::vector<ScenarioDesign> all_scenario_designs() {
  std::vector<ScenarioDesign> out;
  for (const char* d : {"upstream", "hugepage-v5", "upstream-rcu", "baseline", "centralized-rfc-fixed", "split-hook", "single-hook"})
    for (const auto& s : builtin_scenarios()) out.push_back({s.name, d});
  return out;
}

INSTANTIATE_TEST_SUITE_P(All, BuiltinScenario, ::testing::ValuesIn(all_scenario_designs()),
                         [](const auto& info) {
                           std::string n = info.param.scenario + "_" + info.param.design;
                           for (auto& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

// ---- replay and shrinking on a planted MMU bug ------------------------------

// The baseline design without the freeze: the new mirror SPTE is installed
// first and the external side updated after, so a racing fault can walk
// into a mirror table whose S-EPT page is not linked yet.
class NoFreezeDesign final : public HookDesign {
 public:
  explicit NoFreezeDesign(std::unique_ptr<HookDesign> base) : base_(std::move(base)) {}
  std::string_view name() const override { return "test-no-freeze"; }
  int set_spte_atomic_mirror(TdpMmu& mmu, TdpIter& iter, uint64_t new_spte) override {
    const uint64_t old_spte = iter.old_spte;
    if (!sync::cmpxchg_spte(iter.sptep, iter.old_spte, new_spte)) return -EBUSY;
    const int r = spte::is_last(new_spte, iter.level)
                      ? mmu.external()->set_external_spte(iter.gfn, iter.level, new_spte)
                      : mmu.external()->link_external_spt(iter.gfn, iter.level,
                                                          spte_to_child_sp(mmu.pool(), new_spte)->external_spt);
    if (r) sync::write_spte(iter.sptep, iter.old_spte);
    else mmu.handle_changed_spte(iter.sp(), iter.gfn, old_spte, new_spte, iter.level, true);
    return r;
  }
  void after_set_spte_mirror(TdpMmu& m, Gfn g, uint64_t o, uint64_t n, PgLevel l) override {
    base_->after_set_spte_mirror(m, g, o, n, l);
  }
  void removed_child_mirror(TdpMmu& m, Gfn g, uint64_t o, PgLevel l, bool s) override {
    base_->removed_child_mirror(m, g, o, l, s);
  }
  void removed_pt_mirror(TdpMmu& m, MmuPage& sp) override { base_->removed_pt_mirror(m, sp); }

 private:
  std::unique_ptr<HookDesign> base_;
};

void register_no_freeze() {
  static bool done = false;
  if (done) return;
  done = true;
  register_design({"test-no-freeze", "a planted bug", "baseline without the freeze",
                   [] { return std::unique_ptr<HookDesign>(new NoFreezeDesign(make_baseline_design())); }});
}

std::optional<Failure> find_no_freeze_failure(bool shrink) {
  register_no_freeze();
  ExploreConfig cfg;
  cfg.scenario = "fault-fault-2m";
  cfg.design = "test-no-freeze";
  cfg.scale = 2;
  cfg.budget = 4000;
  cfg.preemptions = 1;
  cfg.shrink = shrink;
  cfg.max_failures = 1;
  std::string err;
  auto rep = explore::explore(cfg, nullptr, &err);
  if (!rep || rep->failures.empty()) return std::nullopt;
  return rep->failures.front();
}

TEST(Explorer, FindsTheMissingFreezeAndReplaysItByteForByte) {
  auto f = find_no_freeze_failure(true);
  ASSERT_TRUE(f.has_value()) << "DFS did not find the race the freeze prevents";
  EXPECT_FALSE(f->result.ok);
  std::cout << "found: " << f->result.invariant << ": " << f->result.detail << " after " << f->result.where
            << "\n  replay: " << f->schedule.str() << " (" << f->original.choices.size() << " -> "
            << f->schedule.choices.size() << " deviations)\n";
  std::string err;
  auto a = replay(f->schedule, &err);
  auto b = replay(f->schedule, &err);
  ASSERT_TRUE(a && b) << err;
  EXPECT_FALSE(a->ok);
  EXPECT_EQ(a->invariant, f->result.invariant);
  const std::string ta = format_trace(*a), tb = format_trace(*b);
  EXPECT_FALSE(ta.empty());
  EXPECT_EQ(ta, tb);
  EXPECT_EQ(ta, format_trace(f->result));
}

TEST(Explorer, ShrinkingYieldsASmallerFailingSchedule) {
  auto f = find_no_freeze_failure(false);
  ASSERT_TRUE(f.has_value());
  // Pad the failing schedule with deviations that don't matter, at a larger
  // scale: shrinking must strip them and keep the failure.
  ASSERT_EQ(f->schedule.scale, 2);
  // Extra deviations past the end of the execution are never reached: the
  // schedule still fails, and shrinking must strip them as well as reduce
  // the scale (operations per thread).
  std::string err;
  auto first = replay(f->schedule, &err);
  ASSERT_TRUE(first.has_value()) << err;
  Schedule noisy = f->schedule;
  for (uint64_t d = first->decisions + 10; d < first->decisions + 40; d += 10) noisy.choices[d] = 1;
  auto r = replay(noisy, &err);
  ASSERT_TRUE(r.has_value()) << err;
  ASSERT_FALSE(r->ok);
  uint64_t runs = 0;
  const Schedule small = shrink(noisy, r->invariant, &runs);
  EXPECT_GT(runs, 0u);
  EXPECT_LT(small.scale, noisy.scale);
  EXPECT_LE(small.choices.size(), f->schedule.choices.size());
  auto again = replay(small, &err);
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(again->ok);
  EXPECT_EQ(again->invariant, r->invariant);
}

}  // namespace
}  // namespace mirrormmu::test

namespace mirrormmu::test {
namespace {

// Yan Zhao's stats hazard in the first posting of the centralized layout:
// counted before the hook, a map the module refuses with BUSY is counted
// anyway. One injected BUSY is enough for the explorer to find it; the same
// budget on the fixed layout finds nothing (BuiltinScenario above).
TEST(Explorer, FindsTheStatsCountedBeforeTheHookInTheFirstCentralizedPosting) {
  ExploreConfig cfg;
  cfg.scenario = "fault-fault-2m";
  cfg.design = "centralized-rfc";
  cfg.strategy = StrategyKind::Dfs;
  cfg.budget = 300;
  cfg.fail_budget = {1, 0, 0, 0};
  std::string err;
  auto rep = explore::explore(cfg, nullptr, &err);
  ASSERT_TRUE(rep.has_value()) << err;
  ASSERT_FALSE(rep->failures.empty()) << "the stats hazard was not found";
  const auto& f = rep->failures.front();
  EXPECT_EQ(f.result.invariant, "stats_pages");
  auto again = replay(f.schedule, &err);
  ASSERT_TRUE(again.has_value()) << err;
  EXPECT_EQ(again->invariant, "stats_pages");
  EXPECT_EQ(f.schedule.design, "centralized-rfc");
}

}  // namespace
}  // namespace mirrormmu::test
