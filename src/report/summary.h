// SPDX-License-Identifier: MIT
// The run summary: a text report for people and the same facts as JSON.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "workload/runner.h"

namespace mirrormmu {

// The command line that replays this run exactly.
std::string replay_command(const WorkloadConfig& c);
std::string format_summary(const RunOutcome& r);
// How pages went out and came back, per owner (PfnPool::flow).
std::string format_page_flow(const PfnPool& pool);
nlohmann::json summary_json(const RunOutcome& r);

}  // namespace mirrormmu
