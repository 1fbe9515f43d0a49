// SPDX-License-Identifier: MIT
// Small random programs, explored with and without reduction: the programs
// no one would think to write are where a reduction's corner cases hide.
// Each has two or three threads of reads and writes of three words, and, in
// half of them, a thread that spins (cond_resched_spin, the engine's fair
// hand-off) until one of the others sets a flag. Every end state (the words
// and every value read) an unreduced DFS finds within a preemption bound,
// sleep sets and DPOR must find within the same bound.
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <sstream>

#include "base/sanitizers.h"
#include "explore/strategy.h"
#include "sync/det_engine.h"
#include "sync/sched.h"
#include "sync/spte_atomic.h"

namespace mirrormmu::test {
namespace {

using explore::DfsStrategy;

struct Op {
  int word;
  bool write;
};
struct RandomProgram {
  std::vector<std::vector<Op>> threads;
  bool spinner = false;
  int setter = 0, setter_at = 0;  // who sets the flag, before which of its operations

  std::string describe() const {
    std::ostringstream o;
    for (size_t t = 0; t < threads.size(); t++) {
      o << " t" << t << ":";
      for (const Op& op : threads[t]) o << (op.write ? " w" : " r") << op.word;
    }
    if (spinner) o << " | spinner, flag set by t" << setter << " before op " << setter_at;
    return o.str();
  }
};

RandomProgram random_program(std::mt19937& rng) {
  RandomProgram p;
  const int nthreads = 2 + static_cast<int>(rng() % 2);
  for (int t = 0; t < nthreads; t++) {
    std::vector<Op> ops(1 + rng() % 3);
    for (Op& op : ops) op = {static_cast<int>(rng() % 3), rng() % 2 == 0};
    p.threads.push_back(ops);
  }
  p.spinner = rng() % 2 == 0;
  p.setter = static_cast<int>(rng() % static_cast<unsigned>(nthreads));
  p.setter_at = static_cast<int>(rng() % 4);
  return p;
}

std::vector<uint64_t> run_once(const RandomProgram& p, sync::DetEngine& e) {
  uint64_t words[3] = {0, 0, 0};
  uint64_t flag = 0;
  std::vector<uint64_t> seen(p.threads.size() * 3 + 1, 0);
  if (p.spinner)
    e.spawn("spinner", [&] {
      while (sync::read_spte(&flag) == 0) sync::cond_resched_spin(&flag);
      seen.back() = sync::read_spte(&words[0]);
    });
  for (size_t t = 0; t < p.threads.size(); t++)
    e.spawn("t" + std::to_string(t), [&, t] {
      const bool setter = p.spinner && static_cast<int>(t) == p.setter;
      for (size_t k = 0; k < p.threads[t].size(); k++) {
        if (setter && static_cast<int>(k) == p.setter_at) sync::write_spte(&flag, 1);
        const Op& op = p.threads[t][k];
        if (op.write)
          sync::write_spte(&words[op.word], t * 10 + k + 1);
        else
          seen[t * 3 + k] = sync::read_spte(&words[op.word]);
      }
      if (setter && p.setter_at >= static_cast<int>(p.threads[t].size())) sync::write_spte(&flag, 1);
    });
  EXPECT_TRUE(e.run());
  seen.insert(seen.end(), words, words + 3);
  return seen;
}

std::set<std::vector<uint64_t>> end_states(const RandomProgram& p, int bound, bool reduce, bool dpor) {
  std::set<std::vector<uint64_t>> states;
  DfsStrategy dfs(bound, 0, 1, reduce, dpor);
  uint64_t executions = 0;
  do {
    sync::DetEngine e(dfs, {});
    states.insert(run_once(p, e));
  } while (dfs.next() && ++executions < 100000);
  return states;
}

TEST(RandomPrograms, ReductionsFindEveryEndStateUnreducedDfsFinds) {
  std::mt19937 rng(20261202);
  int spinners = 0;
  // Under the sanitizers (make test) the first 150 programs: the same
  // generator, so those are the release run's first 150.
#if defined(MIRRORMMU_ASAN) || defined(MIRRORMMU_TSAN)
  constexpr int kPrograms = 150;
#else
  constexpr int kPrograms = 400;
#endif
  for (int i = 0; i < kPrograms; i++) {
    const RandomProgram p = random_program(rng);
    spinners += p.spinner;
    for (int bound = 0; bound <= 2; bound++) {
      const auto full = end_states(p, bound, false, false);
      ASSERT_EQ(end_states(p, bound, true, false), full) << "sleep sets, program " << i << p.describe() << ", bound "
                                                          << bound;
      ASSERT_EQ(end_states(p, bound, true, true), full) << "DPOR, program " << i << p.describe() << ", bound "
                                                         << bound;
    }
  }
  EXPECT_GT(spinners, kPrograms / 4);
}

}  // namespace
}  // namespace mirrormmu::test
