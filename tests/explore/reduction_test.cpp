// SPDX-License-Identifier: MIT
// Partial-order reduction (sleep sets in DfsStrategy) must not lose anything
// the checker could see: every end state and every failure an unreduced DFS
// finds within a preemption bound, the reduced one finds within the same
// bound. Shown on small engine programs (where the reduction is large and
// where hidden shared state would break it) and on every built-in scenario.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "explore/explorer.h"
#include "sync/det_engine.h"
#include "sync/sched.h"
#include "sync/spte_atomic.h"
#include "workload/plain_explored.h"
#include "builtin_names.h"

namespace mirrormmu::test {
namespace {

using explore::DfsStrategy;

// What every execution of a program ended with, and how many ran.
struct Outcomes {
  std::set<std::vector<uint64_t>> states;
  uint64_t executions = 0, pruned = 0;
};

// Three threads; thread t reads and rewrites words layout[t][0..], so the
// layout decides which steps are independent. `hidden`: each thread also
// bumps a plain counter no scheduling point names and records what it saw,
// unless `touch` declares it (sched_touch), as the page pool does.
struct Program {
  std::vector<std::vector<int>> layout;
  bool hidden = false;
  bool touch = false;
};

std::vector<uint64_t> run_once(const Program& p, sync::DetStrategy& s) {
  std::vector<uint64_t> words(8, 0);
  uint64_t counter = 0;
  std::vector<uint64_t> seen(p.layout.size() * 8, 0);
  sync::DetEngine e(s, {});
  for (size_t t = 0; t < p.layout.size(); t++)
    e.spawn("t" + std::to_string(t), [&, t] {
      size_t k = 0;
      for (int w : p.layout[t]) {
        const uint64_t v = sync::read_spte(&words[static_cast<size_t>(w)]);
        seen[t * 8 + k++] = v;
        if (p.hidden) {
          if (p.touch) sync::sched_touch(&counter);
          seen[t * 8 + k++] = counter++;
        }
        sync::write_spte(&words[static_cast<size_t>(w)], v * 3 + t + 1);
      }
    });
  EXPECT_TRUE(e.run());
  std::vector<uint64_t> state = words;
  state.insert(state.end(), seen.begin(), seen.end());
  return state;
}

Outcomes explore_program(const Program& p, int bound, bool reduce, bool dpor = false) {
  Outcomes o;
  DfsStrategy dfs(bound, 0, 1, reduce, dpor);
  do {
    o.states.insert(run_once(p, dfs));
    o.executions++;
  } while (dfs.next() && o.executions < 200000);
  o.pruned = dfs.pruned();
  return o;
}

TEST(Reduction, IndependentThreadsArePrunedAndNothingIsLost) {
  // Disjoint words: every interleaving is equivalent to every other.
  const Program p{{{0, 1}, {2, 3}, {4, 5}}};
  for (int bound = 0; bound <= 2; bound++) {
    const Outcomes full = explore_program(p, bound, false);
    const Outcomes reduced = explore_program(p, bound, true);
    EXPECT_EQ(reduced.states, full.states) << "bound " << bound;
    EXPECT_EQ(full.states.size(), 1u) << "disjoint threads end the same whatever the order";
    EXPECT_LE(reduced.executions, full.executions) << "bound " << bound;
    if (bound >= 2) {
      EXPECT_GT(reduced.pruned, 0u) << "bound " << bound;
      EXPECT_LT(reduced.executions, full.executions) << "bound " << bound;
    }
  }
}

TEST(Reduction, SharedWordsKeepEveryOutcome) {
  // Overlapping words, in different orders: lost updates and read values
  // depend on the interleaving, and every one of them must survive.
  const std::vector<Program> programs = {
      {{{0, 1}, {1, 2}, {2, 0}}},
      {{{0, 0}, {0, 3}, {4}}},
      {{{0, 1, 2}, {2, 1}, {5, 0}}},
  };
  for (size_t i = 0; i < programs.size(); i++)
    for (int bound = 0; bound <= 2; bound++) {
      const Outcomes full = explore_program(programs[i], bound, false);
      const Outcomes reduced = explore_program(programs[i], bound, true);
      EXPECT_EQ(reduced.states, full.states) << "program " << i << " bound " << bound;
      EXPECT_LE(reduced.executions, full.executions) << "program " << i << " bound " << bound;
      if (bound == 2) {
        EXPECT_GT(full.states.size(), 1u) << "program " << i << " must race";
      }
    }
}

// DPOR tries a sibling only for a thread whose step races with a later one:
// disjoint threads need one execution per bound whatever the bound, and
// racing ones keep every outcome.
TEST(Dpor, DisjointThreadsRunOnceAndRacingOnesKeepEveryOutcome) {
  const Program disjoint{{{0, 1}, {2, 3}, {4, 5}}};
  for (int bound = 0; bound <= 2; bound++) {
    const Outcomes full = explore_program(disjoint, bound, false);
    const Outcomes dpor = explore_program(disjoint, bound, true, true);
    EXPECT_EQ(dpor.states, full.states) << "bound " << bound;
    EXPECT_EQ(dpor.executions, 1u) << "bound " << bound << ": no step races with another";
  }
  const std::vector<Program> racing = {
      {{{0, 1}, {1, 2}, {2, 0}}},
      {{{0, 0}, {0, 3}, {4}}},
      {{{0, 1, 2}, {2, 1}, {5, 0}}},
      {{{0, 1}, {2, 3}}, true, true},
  };
  for (size_t i = 0; i < racing.size(); i++)
    for (int bound = 0; bound <= 3; bound++) {
      const Outcomes full = explore_program(racing[i], bound, false);
      const Outcomes dpor = explore_program(racing[i], bound, true, true);
      EXPECT_EQ(dpor.states, full.states) << "program " << i << " bound " << bound;
      EXPECT_LE(dpor.executions, full.executions) << "program " << i << " bound " << bound;
      std::cout << "program " << i << " bound " << bound << ": " << full.executions << " executions, DPOR "
                << dpor.executions << "\n";
    }
}

TEST(Reduction, HiddenStateBreaksItUnlessTouched) {
  // The counter is shared but invisible to the engine: the reduction then
  // treats the threads as independent and loses orders of the counter. The
  // test would catch a dependence relation that misses shared state; with
  // sched_touch the counter orders the steps again.
  Program p{{{0, 1}, {2, 3}}, true, false};
  const Outcomes full = explore_program(p, 2, false);
  const Outcomes blind = explore_program(p, 2, true);
  std::cout << "hidden: " << full.states.size() << " vs " << blind.states.size() << "\n";
  EXPECT_LT(blind.states.size(), full.states.size()) << "hidden shared state must be lost by a blind reduction";
  const Outcomes blind_dpor = explore_program(p, 2, true, true);
  EXPECT_LT(blind_dpor.states.size(), full.states.size()) << "and by DPOR, whose races are only as good";
  p.touch = true;
  const Outcomes full_touched = explore_program(p, 2, false);
  const Outcomes touched = explore_program(p, 2, true);
  EXPECT_EQ(touched.states, full_touched.states);
}

// ---- every built-in scenario --------------------------------------------------

struct Seen {
  std::set<uint64_t> end_states;
  std::set<std::string> failures;
  std::bitset<TransitionCounts::kClasses> classes;
  std::array<bool, kSiteCount> sites{};
  uint64_t executions = 0, pruned = 0;
  bool exhausted = false;
};

Seen explore_scenario(const std::string& name, int bound, bool reduce, uint64_t budget, bool dpor = false) {
  Seen s;
  explore::ExploreConfig cfg;
  cfg.scenario = name;
  cfg.dpor = dpor;
  // A scenario with private huge pages needs the design that maps them.
  for (const auto& b : explore::builtin_scenarios())
    if (b.name == name && b.make(1).huge_pages) cfg.design = "hugepage-v5";
  cfg.scale = 1;
  cfg.preemptions = bound;
  cfg.reduction = reduce;
  cfg.budget = budget;
  cfg.shrink = false;
  cfg.max_failures = 1000;
  cfg.on_execution = [&](const explore::ExecResult& r, const explore::Schedule&) {
    s.end_states.insert(r.end_state);
    if (!r.ok) s.failures.insert(r.invariant);
    for (size_t i = 0; i < kSiteCount; i++) s.sites[i] = s.sites[i] || r.sites[i];
  };
  std::string error;
  const auto rep = explore::explore(cfg, nullptr, &error);
  EXPECT_TRUE(rep.has_value()) << name << ": " << error;
  if (!rep) return s;
  s.classes = rep->classes;
  s.executions = rep->executions;
  s.pruned = rep->pruned;
  s.exhausted = rep->exhausted;
  return s;
}

// At the largest bound (up to two preemptions) whose unreduced search
// finishes within `cap` executions: the comparison must be exhaustive on
// both sides, and the suite runs under sanitizers. Two-thread races give the
// reduction room only from two preemptions on; where one preemption already
// takes many executions, two are out of reach here.
void expect_sound(const std::string& name, uint64_t cap) {
  int bound = 1;
  Seen full = explore_scenario(name, bound, false, cap);
  if (!full.exhausted) {
    bound = 0;
    full = explore_scenario(name, bound, false, cap);
  } else if (full.executions <= 60) {
    Seen two = explore_scenario(name, 2, false, cap);
    if (two.exhausted) {
      bound = 2;
      full = std::move(two);
    }
  }
  const Seen reduced = explore_scenario(name, bound, true, cap);
  ASSERT_TRUE(full.exhausted) << name << ": the comparison needs a search that finishes";
  EXPECT_TRUE(reduced.exhausted) << name;
  EXPECT_EQ(reduced.end_states, full.end_states) << name << ": " << full.end_states.size() << " end states without "
                                                 << "reduction, " << reduced.end_states.size() << " with";
  EXPECT_EQ(reduced.failures, full.failures) << name;
  EXPECT_EQ(reduced.classes, full.classes) << name;
  EXPECT_EQ(reduced.sites, full.sites) << name;
  EXPECT_LE(reduced.executions, full.executions) << name;
  EXPECT_EQ(full.pruned, 0u) << name;
  // DPOR on top, the same comparison.
  const Seen dpor = explore_scenario(name, bound, true, cap, true);
  EXPECT_TRUE(dpor.exhausted) << name;
  EXPECT_EQ(dpor.end_states, full.end_states) << name << ": " << full.end_states.size() << " end states without "
                                              << "reduction, " << dpor.end_states.size() << " with DPOR";
  EXPECT_EQ(dpor.failures, full.failures) << name << " (DPOR)";
  EXPECT_EQ(dpor.classes, full.classes) << name << " (DPOR)";
  EXPECT_EQ(dpor.sites, full.sites) << name << " (DPOR)";
  EXPECT_LE(dpor.executions, full.executions) << name;
  std::cout << name << " at " << bound << " preemption(s): " << full.executions << " executions, reduced "
            << reduced.executions << " (" << reduced.pruned << " branches pruned), DPOR " << dpor.executions << ", "
            << full.end_states.size() << " end states, " << full.failures.size() << " failures\n";
}


class ScenarioReduction : public ::testing::TestWithParam<std::string> {};

TEST_P(ScenarioReduction, SameEndStatesAndFailures) { expect_sound(GetParam(), 1200); }

INSTANTIATE_TEST_SUITE_P(Builtin, ScenarioReduction, ::testing::ValuesIn(builtin_scenario_names()),
                         ScenarioParamName());

// Two preemptions, where two-thread races first give the reduction room;
// a three-thread plain race that finishes in seconds.
TEST(ScenarioReductionLarge, AgeVsZapAtTwoPreemptions) {
  register_plain_source();
  const std::string name = plain_source_name("model", "age-vs-zap");
  const Seen full = explore_scenario(name, 2, false, 100000);
  const Seen reduced = explore_scenario(name, 2, true, 100000);
  ASSERT_TRUE(full.exhausted);
  EXPECT_EQ(reduced.end_states, full.end_states);
  EXPECT_EQ(reduced.failures, full.failures);
  EXPECT_GT(reduced.pruned, 0u);
  EXPECT_LT(reduced.executions, full.executions);
  const Seen dpor = explore_scenario(name, 2, true, 100000, true);
  EXPECT_EQ(dpor.end_states, full.end_states);
  EXPECT_EQ(dpor.failures, full.failures);
  EXPECT_EQ(dpor.classes, full.classes);
  EXPECT_LE(dpor.executions, reduced.executions);
}

// The races DPOR was built for, at one preemption where the suite above
// can only afford none: a deletion racing faults on both roots, where every
// step of the VMM's zap would otherwise be a branch.
TEST(ScenarioReductionLarge, DporOnFaultVsDeleteAtOnePreemption) {
  const Seen full = explore_scenario("fault-vs-delete", 1, false, 5000);
  ASSERT_TRUE(full.exhausted);
  const Seen dpor = explore_scenario("fault-vs-delete", 1, true, 5000, true);
  ASSERT_TRUE(dpor.exhausted);
  EXPECT_EQ(dpor.end_states, full.end_states);
  EXPECT_EQ(dpor.failures, full.failures);
  EXPECT_EQ(dpor.classes, full.classes);
  EXPECT_EQ(dpor.sites, full.sites);
  EXPECT_LT(dpor.executions, full.executions);
  std::cout << "fault-vs-delete at 1 preemption: " << full.executions << " executions, DPOR " << dpor.executions
            << ", " << full.end_states.size() << " end states\n";
}

}  // namespace
}  // namespace mirrormmu::test
