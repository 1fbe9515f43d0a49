// SPDX-License-Identifier: MIT
// Runs one workload end to end: VM, checker, operations, teardown, and the
// end-of-life check. The VM and checker are kept for the report.
#pragma once

#include <memory>
#include <string>

#include "check/checker.h"
#include "vm/vm.h"
#include "workload/workload.h"

namespace mirrormmu {

struct RunOutcome {
  WorkloadConfig config;
  WorkloadResult result;
  std::unique_ptr<Vm> vm;
  std::unique_ptr<Checker> checker;
  std::unique_ptr<FaultInjector> injector;  // the run's own, for --inject
};

// Why `cfg` cannot be run (an unknown workload, a size its selftest would
// refuse, a design that cannot do what it asks), or "": nothing allocated.
std::string workload_refusal(const WorkloadConfig& cfg);
RunOutcome run_workload(const WorkloadConfig& cfg);

}  // namespace mirrormmu
