// SPDX-License-Identifier: MIT
// One execution of a scenario under the deterministic engine: setup on one
// thread, the scenario's threads interleaved as the strategy decides, then
// every invariant, teardown and the end-of-life check.
#pragma once

#include <array>
#include <bitset>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/bug.h"
#include "base/inject.h"
#include "check/transitions.h"
#include "mmu/design.h"
#include "explore/scenario.h"
#include "explore/strategy.h"
#include "sync/det_engine.h"

namespace mirrormmu {
class Checker;
}

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
  uint64_t steps_fast_forwarded = 0;  // of `steps`, passed in one go (DetEngine::fast_forward)
  uint32_t fails_fired = 0;
  std::array<uint32_t, sync::kFailKindCount> fired_by_kind{};  // the same, per kind
  Choices choices;             // the non-default decisions taken
  uint64_t end_state = 0;      // end_state_digest() after the racing part
  std::bitset<TransitionCounts::kClasses> classes;
  std::array<uint64_t, kSiteCount> sites{};
  TransitionRows rows;  // per row of the transition table (complete executions only)
  std::vector<std::string> thread_names;
  std::vector<uint64_t> decisions_by_thread;  // indexed like thread_names: where the tree branches
  std::vector<TraceEvent> trace;
};

class Tracer;

// What an engine's run says of itself: steps, decisions, preemptions, the
// failures it injected, the choices that replay it, and decisions per thread.
void record_engine(const sync::DetEngine& e, ExecResult& r);

// What every explored execution shares: a TD under the deterministic engine
// with its checker and tracer, failure points live from creation to
// teardown, and the bookkeeping that turns the run into an ExecResult.
// run_execution() drives a scenario with it; the workload layer drives a
// whole workload.
class Harness {
 public:
  Harness(const VmConfig& vc, sync::DetStrategy& strategy, const ExecConfig& cfg);
  ~Harness();
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  Vm& vm() { return *vm_; }
  Checker& checker() { return *ck_; }
  sync::DetEngine& engine() { return *engine_; }
  // Runs the virtual threads spawned since the last call. False when they
  // deadlocked or livelocked: the result says so, naming `phase`, and the
  // TD and its threads are parked for good (nothing can be torn down).
  bool run(const std::string& phase);
  // Whether any injected failure fired so far.
  bool injected() const;
  // The result as it stands (after a false run(), final).
  ExecResult& result() { return r_; }
  // Ends an execution whose TD could not even be built: no teardown.
  ExecResult& stop(std::string invariant, std::string detail);
  // Teardown under the engine, the end-of-life check, and the result.
  ExecResult& finish();

 private:
  void count();
  void first_failure();
  void park();

  ExecResult r_;
  std::unique_ptr<FaultInjector> inject_;
  std::unique_ptr<Vm> vm_;
  std::unique_ptr<Checker> ck_;
  std::unique_ptr<Tracer> tracer_;
  std::unique_ptr<sync::DetEngine> engine_;
};

ExecResult run_execution(const Scenario& s, sync::DetStrategy& strategy, const ExecConfig& cfg);

// The text form of a trace, one event per line.
std::string format_trace(const ExecResult& r);

}  // namespace mirrormmu::explore
