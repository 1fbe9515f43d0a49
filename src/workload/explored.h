// SPDX-License-Identifier: MIT
// A workload under the explorer: the operations a native run makes, each
// run as virtual threads of the deterministic engine (one for a VMM step,
// one per vCPU plus the VMM for a parallel phase), so every interleaving of
// the whole TD life, setup and teardown included, is chosen, checked and
// replayable from a schedule string.
#pragma once

#include <optional>
#include <string>

#include "explore/explorer.h"
#include "workload/workload.h"

namespace mirrormmu {

// "workload:td-life:gib=0.01:vcpus=2[:huge][:dpamt][:tdx-pool]" (the seed is 1: the
// schedule string is the one thing that varies).
std::string workload_source_name(const WorkloadConfig& c);
std::optional<WorkloadConfig> parse_workload_source(const std::string& name, std::string* error);

explore::ExecResult run_workload_execution(const WorkloadConfig& cfg, sync::DetStrategy& strategy,
                                           const explore::ExecConfig& ec);

// Lets explore and replay resolve "workload:..." names.
void register_workload_source();

}  // namespace mirrormmu
