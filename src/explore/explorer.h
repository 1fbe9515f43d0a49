// SPDX-License-Identifier: MIT
// The explorer: runs a scenario execution after execution under a strategy,
// collects what was seen, and for every failure finds the smallest story
// (fewer operations, fewer preemptions, fewer injected failures) and the one
// string that replays it.
#pragma once

#include <array>
#include <bitset>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "explore/execution.h"

namespace mirrormmu::explore {

struct Schedule;

// Something the explorer can run execution after execution: a built-in or
// file scenario, or a source registered by a higher layer (a workload).
struct ExecutionSource {
  std::function<ExecResult(sync::DetStrategy&, const ExecConfig&)> run;
  int threads = 2;  // virtual threads racing at once, for PCT
};
// Resolves a name with the registered prefix (e.g. "workload:") under a
// design spec; nullopt with *error for a bad name or a refused config.
using SourceResolver = std::optional<ExecutionSource> (*)(const std::string& name, const std::string& design,
                                                         std::string* error);
void register_source(const std::string& prefix, SourceResolver resolver);
// A registered source, or a scenario (built-in name or JSON file) at `scale`.
std::optional<ExecutionSource> resolve_source(const std::string& name, int scale, const std::string& design,
                                              std::string* error);

enum class StrategyKind : uint8_t { Dfs, Pct, Random };

struct ExploreConfig {
  std::string scenario = "fault-fault-2m";
  std::string design = kDefaultDesign;
  int scale = 2;                    // operations per thread
  StrategyKind strategy = StrategyKind::Dfs;
  uint64_t budget = 1000;           // executions
  double seconds = 0;               // wall-clock limit (0: none)
  int preemptions = 2;              // DFS: iterative context bound up to this
  bool reduction = true;            // DFS: sleep sets (see DfsStrategy)
  bool dpor = false;                // DFS: race-driven backtracking too (one shard only)
  bool fast_forward = true;         // walks over empty tables with nothing else to run (DetEngine::fast_forward)
  int depth = 3;                    // PCT depth
  uint64_t seed = 1;
  std::array<uint32_t, sync::kFailKindCount> fail_budget{};  // busy, topup, cmpxchg, yield
  bool shrink = true;
  size_t max_failures = 3;          // distinct invariants to report
  uint64_t max_steps = 0;           // per execution before "livelock" (0: the engine's default)
  // --shard I/N: a deterministic 1/N of the same search (merge_reports()
  // puts the N parts back together). DFS splits the tree by the first
  // deviation from the default schedule; PCT and random take every N-th of
  // the executions the whole search would run.
  int shard = 0, shards = 1;
  // Sees every execution as it completes, with the schedule that replays it.
  std::function<void(const ExecResult&, const Schedule&)> on_execution;
};

// Everything needed to replay one execution exactly.
struct Schedule {
  std::string scenario;
  std::string design;
  int scale = 2;
  std::array<uint32_t, sync::kFailKindCount> fail_budget{};
  Choices choices;
  std::string str() const;  // "fault-fault-2m/baseline/s2/f0,0,0,0/3.1-17.1"
  static std::optional<Schedule> parse(const std::string& s, std::string* error);
};

struct Failure {
  ExecResult result;     // of the shrunk execution
  Schedule schedule;     // shrunk
  Schedule original;
  uint64_t shrink_runs = 0;
};

struct ExploreReport {
  uint64_t executions = 0;
  double seconds = 0;
  bool exhausted = false;  // DFS covered every schedule within the bound
  uint64_t pruned = 0;     // DFS branches the reduction showed equivalent to explored ones
  uint64_t pruned_by_races = 0;  // of those, left out by DPOR: no race asked for them
  uint64_t max_steps = 0, max_decisions = 0;
  // The execution with the most decisions, by the thread that was running:
  // where a scenario makes the tree wide.
  std::vector<std::pair<std::string, uint64_t>> max_decisions_by_thread;
  std::bitset<TransitionCounts::kClasses> classes;
  std::array<uint64_t, kSiteCount> sites{};  // executions in which each site fired
  std::vector<Failure> failures;
  Schedule last;  // the last execution run, for a trace when nothing failed
  // Injected failures that fired, per kind, summed over the executions, and
  // the executions in which at least one of that kind fired.
  std::array<uint64_t, sync::kFailKindCount> fired{};
  std::array<uint64_t, sync::kFailKindCount> executions_with_fired{};
  // OK means no failure and no site hit in any execution: a site is a
  // failure even if some path let it through unreported.
  bool ok() const {
    for (uint64_t n : sites)
      if (n) return false;
    return failures.empty();
  }
};

using Progress = std::function<void(const ExploreReport&)>;

// The report a single run would give, from the reports of the N shards of
// one search (in any order). Executions, sites and injected failures add
// up; classes, exhaustion and failures (one per invariant, up to
// max_failures, the first shard's first) combine. Nullopt with *error if
// they are not the N distinct shards of one search.
std::optional<ExploreReport> merge_reports(const std::vector<std::pair<int, ExploreReport>>& shards, int nshards,
                                           size_t max_failures, std::string* error);

// Runs the exploration. Returns nullopt (with `error`) for a bad scenario.
std::optional<ExploreReport> explore(const ExploreConfig& cfg, const Progress& progress, std::string* error);

// Re-runs one schedule with the full trace.
std::optional<ExecResult> replay(const Schedule& s, std::string* error);

// Shrinks a failing schedule; `runs` counts the executions it took.
Schedule shrink(const Schedule& failing, const std::string& invariant, uint64_t* runs);

}  // namespace mirrormmu::explore
