// One execution of a scenario under the deterministic engine: setup on one
// thread, the scenario's threads interleaved as the strategy decides, then
// every invariant, teardown and the end-of-life check.
#pragma once

#include <array>
#include <bitset>
#include <cstdint>
#include <string>
#include <vector>

#include "base/bug.h"
#include "check/transitions.h"
#include "mmu/design.h"
#include "explore/scenario.h"
#include "explore/strategy.h"

namespace mirrormmu::explore {

struct TraceEvent {
  enum class Kind : uint8_t { Instant, Begin, End, Complete };
  uint64_t step;
  int thread;       // -1: the setup/teardown thread
  Kind kind;
  std::string name;  // span or event name ("mmu_lock read", "TDH.MEM.PAGE.AUG")
  std::string text;  // the full line for the text trace
};

struct ExecConfig {
  std::string design = kDefaultDesign;
  sync::DetLimits limits;
  bool trace = false;
};

struct ExecResult {
  bool ok = true;
  bool aborted = false;        // deadlock or step limit
  std::string invariant;       // first failure: invariant name (or "deadlock", ...)
  std::string detail;
  std::string where;           // the operation after which it was seen
  uint64_t steps = 0, decisions = 0, preemptions = 0;
  uint32_t fails_fired = 0;
  std::array<uint32_t, sync::kFailKindCount> fired_by_kind{};  // the same, per kind
  Choices choices;             // the non-default decisions taken
  std::bitset<TransitionCounts::kClasses> classes;
  std::array<uint64_t, kSiteCount> sites{};
  TransitionRows rows;  // per row of the transition table (complete executions only)
  std::vector<std::string> thread_names;
  std::vector<TraceEvent> trace;
};

ExecResult run_execution(const Scenario& s, sync::DetStrategy& strategy, const ExecConfig& cfg);

// The text form of a trace, one event per line.
std::string format_trace(const ExecResult& r);

}  // namespace mirrormmu::explore
