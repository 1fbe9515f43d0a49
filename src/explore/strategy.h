// SPDX-License-Identifier: MIT
// Strategies that steer the deterministic engine, and the schedule string
// that names one execution.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

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
class DfsStrategy : public sync::DetStrategy {
 public:
  // `shards` > 1: an execution belongs to the shard its first two
  // deviations from the default schedule (positions and choices) hash to;
  // one with a single deviation to the hash of that one, the default
  // execution to shard 0. Every shard runs the executions with at most one
  // deviation (few: they only reveal the tree) and, below them, only the
  // subtrees it owns; owns_current() says whether to count the one just run.
  explicit DfsStrategy(int max_preempt, int shard = 0, int shards = 1)
      : max_preempt_(max_preempt), shard_(shard), shards_(shards) {}
  uint32_t pick_thread(uint64_t seq, uint64_t key, const std::vector<int>& options, bool current_first) override;
  uint32_t pick_fail(uint64_t seq, uint64_t key, sync::FailKind, uint32_t alternatives) override;
  // Call after each execution; false when the tree under the bound is done.
  bool next();
  bool owns_current() const;

 private:
  struct Node {
    uint32_t chosen;
    uint32_t alternatives;
    bool thread;          // a thread decision (else a failure point)
    bool current_first;   // option 0 meant "continue": others are preemptions
  };
  uint32_t decide(uint64_t d, uint32_t alternatives, bool thread, bool current_first);
  int preemptions_before(size_t i) const;

  bool owns(uint64_t key) const;
  // The first two deviations of path_ (position, choice); count up to 2.
  int deviations(size_t end, size_t pos[2], uint32_t choice[2]) const;

  int max_preempt_;
  int shard_, shards_;
  std::vector<Node> path_;    // the current execution's decisions
  size_t forced_ = 0;         // path_[0, forced_) replays the chosen prefix
};

}  // namespace mirrormmu::explore
