// SPDX-License-Identifier: MIT
// Steps that commute although they touch the same object: two read_lock()s
// of one mmu_lock, two rcu_read_lock()s, a reader leaving its section and a
// call_rcu(), and a spinner giving way (yield_to_others) to whoever the
// engine picks. The reductions treat them as independent; these programs
// show that nothing an unreduced DFS finds is lost by that, and that the
// readers alone need a single execution.
#include <gtest/gtest.h>

#include <functional>
#include <set>

#include "explore/strategy.h"
#include "sync/det_engine.h"
#include "sync/mmu_lock.h"
#include "sync/rcu.h"
#include "sync/sched.h"
#include "sync/spte_atomic.h"

namespace mirrormmu::test {
namespace {

using explore::DfsStrategy;

// A program spawns its threads on the engine and returns, once it has run,
// what its threads saw and what they left.
using Program = std::function<std::vector<uint64_t>(sync::DetEngine&)>;

struct Outcomes {
  std::set<std::vector<uint64_t>> states;
  uint64_t executions = 0;
};

enum class Mode { Full, SleepSets, Dpor };

Outcomes explore(const Program& p, int bound, Mode mode) {
  Outcomes o;
  DfsStrategy dfs(bound, 0, 1, mode != Mode::Full, mode == Mode::Dpor);
  do {
    sync::DetEngine e(dfs, {});
    o.states.insert(p(e));
    o.executions++;
  } while (dfs.next() && o.executions < 100000);
  return o;
}

void expect_nothing_lost(const Program& p, const char* what, int max_bound) {
  for (int bound = 0; bound <= max_bound; bound++) {
    const Outcomes full = explore(p, bound, Mode::Full);
    for (Mode m : {Mode::SleepSets, Mode::Dpor}) {
      const Outcomes reduced = explore(p, bound, m);
      EXPECT_EQ(reduced.states, full.states) << what << ", bound " << bound << (m == Mode::Dpor ? ", DPOR" : "");
      EXPECT_LE(reduced.executions, full.executions) << what << ", bound " << bound;
    }
  }
}

// Readers copy two words under mmu_lock held shared; a writer, if there is
// one, changes both under the lock held exclusive.
Program readers_and_writer(int readers, bool writer) {
  return [readers, writer](sync::DetEngine& e) {
    sync::MmuLock lock;
    uint64_t words[2] = {0, 0};
    std::vector<uint64_t> seen(static_cast<size_t>(readers) * 2, 0);
    for (int r = 0; r < readers; r++)
      e.spawn("reader" + std::to_string(r), [&, r] {
        lock.read_lock();
        seen[static_cast<size_t>(r) * 2] = sync::read_spte(&words[0]);
        seen[static_cast<size_t>(r) * 2 + 1] = sync::read_spte(&words[1]);
        lock.read_unlock();
      });
    if (writer)
      e.spawn("writer", [&] {
        lock.write_lock();
        sync::write_spte(&words[0], 1);
        sync::write_spte(&words[1], 1);
        lock.write_unlock();
      });
    EXPECT_TRUE(e.run());
    seen.insert(seen.end(), words, words + 2);
    return seen;
  };
}

TEST(Commute, ReadersOfOneLockRunOnceAndAWriterKeepsEveryOutcome) {
  for (int bound = 0; bound <= 3; bound++) {
    const Outcomes dpor = explore(readers_and_writer(3, false), bound, Mode::Dpor);
    EXPECT_EQ(dpor.executions, 1u) << "bound " << bound << ": shared acquisitions commute";
  }
  expect_nothing_lost(readers_and_writer(2, true), "two readers and a writer", 3);
  // The lock works in every interleaving: no reader saw half of the update.
  for (const auto& s : explore(readers_and_writer(2, true), 3, Mode::Full).states) {
    EXPECT_EQ(s[0], s[1]);
    EXPECT_EQ(s[2], s[3]);
  }
  EXPECT_GT(explore(readers_and_writer(2, true), 2, Mode::Full).states.size(), 1u) << "the writer must race";
}

// A table reached through a published pointer; the updater unpublishes it
// and frees it through call_rcu. Readers record what they found, and
// whether the table was already freed when they read it (a use after free,
// which RCU rules out). A buggy updater that forgets to unpublish lets a
// reader that enters after call_rcu() find the table freed: whether it does
// depends only on the order of that entry and the call_rcu().
struct Table {
  sync::RcuHead head;  // first: the callback gets the table back from it
  uint64_t word = 7;
  uint64_t freed = 0;
};

void free_table(sync::RcuHead* h) {
  auto* t = reinterpret_cast<Table*>(h);
  sync::sched_touch(&t->word);
  t->freed = 1;
}

Program rcu_readers(int readers, int sections, bool updater, bool unpublish = true) {
  return [=](sync::DetEngine& e) {
    Table table;
    uint64_t published = 1;
    std::vector<uint64_t> seen(static_cast<size_t>(readers * sections) * 2, 0);
    for (int r = 0; r < readers; r++)
      e.spawn("reader" + std::to_string(r), [&, r] {
        for (int k = 0; k < sections; k++) {
          sync::rcu_read_lock();
          const size_t at = static_cast<size_t>(r * sections + k) * 2;
          if (sync::read_spte(&published) != 0) {
            seen[at] = sync::read_spte(&table.word);
            seen[at + 1] = table.freed;
          }
          sync::rcu_read_unlock();
        }
      });
    if (updater)
      e.spawn("updater", [&] {
        if (unpublish) sync::write_spte(&published, 0);
        sync::call_rcu(&table.head, free_table);
      });
    EXPECT_TRUE(e.run());
    seen.push_back(table.freed);
    return seen;
  };
}

TEST(Commute, RcuReadersRunOnceAndAnUpdaterKeepsEveryOutcome) {
  for (int bound = 0; bound <= 3; bound++) {
    const Outcomes dpor = explore(rcu_readers(3, 2, false), bound, Mode::Dpor);
    EXPECT_EQ(dpor.executions, 1u) << "bound " << bound << ": entering and leaving read sections commute";
  }
  expect_nothing_lost(rcu_readers(2, 2, true), "two readers and an updater", 3);
  const Outcomes full = explore(rcu_readers(2, 2, true), 3, Mode::Full);
  EXPECT_GT(full.states.size(), 1u) << "the updater must race";
  for (const auto& s : full.states) {
    for (size_t at = 0; at + 1 < s.size() - 1; at += 2) EXPECT_EQ(s[at + 1], 0u) << "a reader saw a freed table";
    EXPECT_EQ(s.back(), 1u) << "the callback ran by the end";
  }
  expect_nothing_lost(rcu_readers(1, 2, true, false), "a reader and an updater that does not unpublish", 3);
  bool use_after_free = false;
  for (const auto& s : explore(rcu_readers(1, 2, true, false), 1, Mode::Dpor).states)
    use_after_free = use_after_free || s[1] == 1 || s[3] == 1;
  EXPECT_TRUE(use_after_free) << "DPOR must find the reader that enters after call_rcu()";
}

// One thread spins until a flag is set, giving way to the others at each
// turn; two others write the word it then reads, one of them setting the
// flag (before or after its write). The engine, not the strategy, picks
// whom the spinner gives way to, and giving way is no access of its own.
Program spinner(bool flag_first) {
  return [flag_first](sync::DetEngine& e) {
    uint64_t flag = 0, word = 0, seen = 0, spins = 0;
    e.spawn("spinner", [&] {
      while (sync::read_spte(&flag) == 0) {
        spins++;
        sync::cond_resched_spin(&flag);
      }
      seen = sync::read_spte(&word);
    });
    e.spawn("setter", [&] {
      if (!flag_first) sync::write_spte(&word, 5);
      sync::write_spte(&flag, 1);
      if (flag_first) sync::write_spte(&word, 5);
    });
    e.spawn("other", [&] { sync::write_spte(&word, 7); });
    EXPECT_TRUE(e.run());
    return std::vector<uint64_t>{seen, word, spins > 0};
  };
}

TEST(Commute, ASpinnerGivingWayLosesNothing) {
  for (bool flag_first : {false, true}) {
    expect_nothing_lost(spinner(flag_first), flag_first ? "spinner, flag first" : "spinner", 3);
    EXPECT_GT(explore(spinner(flag_first), 2, Mode::Full).states.size(), 2u);
  }
}

}  // namespace
}  // namespace mirrormmu::test
