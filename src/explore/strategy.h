// SPDX-License-Identifier: MIT
// Strategies that steer the deterministic engine, and the schedule string
// that names one execution.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "explore/races.h"
#include "sync/det_engine.h"

namespace mirrormmu::explore {

// The non-default decisions of one execution: decision key (sync::thread_key
// or sync::fail_key) -> choice. Every decision not listed takes its default
// (0: let the current thread go on; don't inject). That is the whole schedule.
using Choices = std::map<uint64_t, uint32_t>;

// "3.1-17.1-b2.1-e0.3", dash separated: a thread decision is its ordinal, a
// failure point the kind's letter and its ordinal, then ".choice"; "0" for
// no deviations.
std::string encode_choices(const Choices& c);
std::optional<Choices> decode_choices(const std::string& s);

// Replays given choices; defaults everywhere else.
class ReplayStrategy : public sync::DetStrategy {
 public:
  explicit ReplayStrategy(Choices c) : c_(std::move(c)) {}
  uint32_t pick_thread(uint64_t, uint64_t key, const std::vector<int>& options, bool) override {
    auto it = c_.find(key);
    return it == c_.end() ? 0 : std::min<uint32_t>(it->second, static_cast<uint32_t>(options.size() - 1));
  }
  uint32_t pick_fail(uint64_t, uint64_t key, sync::FailKind, uint32_t alternatives) override {
    auto it = c_.find(key);
    return it == c_.end() ? 0 : std::min(it->second, alternatives - 1);
  }

 private:
  Choices c_;
};

// Fires with probability p, then picks one of the failing alternatives.
uint32_t random_fail(std::mt19937_64& rng, double p, uint32_t alternatives);

// Uniform random walk: every runnable thread equally likely at every
// decision; each failure point fires with probability `fail_p`.
class RandomStrategy : public sync::DetStrategy {
 public:
  RandomStrategy(uint64_t seed, double fail_p) : rng_(seed), fail_p_(fail_p) {}
  uint32_t pick_thread(uint64_t, uint64_t, const std::vector<int>& options, bool) override {
    return std::uniform_int_distribution<uint32_t>(0, static_cast<uint32_t>(options.size() - 1))(rng_);
  }
  uint32_t pick_fail(uint64_t, uint64_t, sync::FailKind, uint32_t alternatives) override {
    return random_fail(rng_, fail_p_, alternatives);
  }

 private:
  std::mt19937_64 rng_;
  double fail_p_;
};

// PCT (Burckhardt et al.): random distinct thread priorities, the highest
// runnable one runs; at d-1 random change points (out of an estimated
// `steps` decisions) the running thread drops to the lowest priority. Finds
// any bug of depth d with probability >= 1/(n * steps^(d-1)).
class PctStrategy : public sync::DetStrategy {
 public:
  PctStrategy(uint64_t seed, int depth, uint64_t steps, int nthreads, double fail_p);
  uint32_t pick_thread(uint64_t seq, uint64_t key, const std::vector<int>& options, bool current_first) override;
  uint32_t pick_fail(uint64_t, uint64_t, sync::FailKind, uint32_t alternatives) override {
    return random_fail(rng_, fail_p_, alternatives);
  }

 private:
  std::mt19937_64 rng_;
  std::vector<int> prio_;       // per thread, higher runs first
  std::vector<uint64_t> change_;
  int next_low_ = -1;
  double fail_p_;
};

// Depth-first, stateless: replays a prefix of decisions, takes defaults after
// it, and remembers what each decision could have been. After an execution,
// next() moves to the next unexplored branch, never exceeding `max_preempt`
// preemptions (iterative context bounding raises the bound stepwise).
//
// With `reduce`, sleep sets (Godefroid) prune interleavings that only
// reorder independent steps (sync::dependent). Under a preemption bound the
// classic rule is unsound: the equivalent interleaving that was explored may
// need one preemption more than the one skipped. So only the thread that was
// running, and could go on, is put to sleep when its siblings are explored:
// moving its step back to the front never costs a preemption, so every
// skipped interleaving has an explored equivalent within the same bound.
class DfsStrategy : public sync::DetStrategy {
 public:
  // `shards` > 1: an execution belongs to the shard its first two
  // deviations from the default schedule (positions and choices) hash to;
  // one with a single deviation to the hash of that one, the default
  // execution to shard 0. Every shard runs the executions with at most one
  // deviation (few: they only reveal the tree) and, below them, only the
  // subtrees it owns; owns_current() says whether to count the one just run.
  //
  // With `dpor` (one shard only; sleep sets on too), dynamic partial-order
  // reduction (Flanagan and Godefroid, POPL 2005): a decision's siblings
  // are tried only for threads whose steps race (RaceTracker) with a step
  // taken after it. Under a preemption bound that alone would be unsound
  // (the reversal may cost a preemption the bound does not have), so each
  // race also asks for the thread at the decision where the earlier step's
  // run of steps began (Coons, Musuvathi and McKinley, "Bounded partial-
  // order reduction", OOPSLA 2013).
  explicit DfsStrategy(int max_preempt, int shard = 0, int shards = 1, bool reduce = false, bool dpor = false)
      : max_preempt_(max_preempt), shard_(shard), shards_(shards), reduce_(reduce || dpor), dpor_(dpor && shards == 1) {
    run_start_.fill(-1);
  }
  uint32_t pick_thread(uint64_t seq, uint64_t key, const std::vector<int>& options, bool current_first) override;
  uint32_t pick_fail(uint64_t seq, uint64_t key, sync::FailKind, uint32_t alternatives) override;
  void on_step(int thread, const sync::StepFootprint& step) override;
  bool wants_pending() const override { return reduce_ && !dpor_; }  // for sleep sets
  bool wants_steps() const override { return tracking_ || (reduce_ && (awaiting_ >= 0 || !sleep_.empty())); }
  void on_run(int threads) override;
  void pending(const std::vector<sync::StepFootprint>& steps) override { pending0_ = steps.front(); }
  // Call after each execution; false when the tree under the bound is done.
  bool next();
  bool owns_current() const;
  // Branches within the bound (and this shard's) that the reduction did not
  // run: each would have been at least one execution.
  uint64_t pruned() const { return pruned_; }
  // Of those, the ones DPOR left out (no race asked for them).
  uint64_t pruned_by_races() const { return pruned_by_races_; }

 private:
  struct Node {
    Node() : Node(0, false, false) {}
    Node(uint32_t alts, bool thr, bool cf) : chosen(0), alternatives(alts), thread(thr), current_first(cf) {}
    uint32_t chosen;
    uint32_t alternatives;
    bool thread;          // a thread decision (else a failure point)
    bool current_first;   // option 0 meant "continue": others are preemptions
    bool frozen = false;  // below a point where a sleeping thread had to run
    bool first_step_known = false;
    uint64_t asleep = 0;  // options (by index) asleep here
    int continuing = -1;  // thread id of option 0 when current_first
    // What option 0's step did when it was chosen: whether it was global or
    // touched, read or added to more than its point said it would. Its addresses belong to that
    // execution; only these flags carry over.
    bool first_step_wide = true;
    // DPOR: the options races asked for, the options run, and the thread
    // behind each option (nopts 0: more than fit, every option is asked).
    uint64_t backtrack = 0, done = 0;
    uint8_t nopts = 0;
    std::array<int8_t, 8> opts{};
  };
  struct Sleeper {
    int thread;
    sync::StepFootprint step;
  };
  uint32_t decide(uint64_t d, uint32_t alternatives, bool thread, bool current_first);
  uint32_t decide_new_thread(uint64_t d, const std::vector<int>& options, bool current_first);
  int preemptions_before(size_t i) const;
  void note_options(Node& n, const std::vector<int>& options) const;
  void ask(int64_t node, int thread);
  void dpor_chose(uint64_t seq, const std::vector<int>& options, uint32_t chosen, bool current_first);
  void dpor_step(int thread, const sync::StepFootprint& step);
  bool next_dpor(size_t i);
  bool asleep(int thread) const;

  bool owns(uint64_t key) const;
  // The first two deviations of path_ (position, choice); count up to 2.
  int deviations(size_t end, size_t pos[2], uint32_t choice[2]) const;
  // Whether the execution that takes choice c at node i would be this shard's.
  bool would_own(size_t i, uint32_t c, int ndev, const size_t pos[2], const uint32_t choice[2]) const;

  int max_preempt_;
  int shard_, shards_;
  bool reduce_;
  std::vector<Node> path_;    // the current execution's decisions
  size_t forced_ = 0;         // path_[0, forced_) replays the chosen prefix
  // Per execution: the sleep set, the node whose chosen step we wait to see
  // (to remember option 0's step), and whether a sleeping thread ran.
  std::vector<Sleeper> sleep_;
  sync::StepFootprint pending0_;  // option 0's next step at the decision being taken
  int64_t awaiting_ = -1;
  bool blocked_ = false;
  uint64_t pruned_ = 0;
  std::vector<int> before_;  // next(): preemptions above each node
  // DPOR, per execution: the races, where each thread's current run began,
  // the origin of the step each thread takes next, who stepped last.
  bool dpor_;
  RaceTracker races_;
  std::vector<RaceTracker::Race> found_;
  std::array<int32_t, RaceTracker::kMaxThreads> run_start_{};
  std::array<RaceTracker::Origin, RaceTracker::kMaxThreads> next_origin_{};
  int last_stepper_ = -1;
  uint64_t pruned_by_races_ = 0;
  // Following this run's steps for races: it has more than one thread (a
  // setup or teardown alone has nothing to race with).
  bool tracking_ = false;
};

}  // namespace mirrormmu::explore
