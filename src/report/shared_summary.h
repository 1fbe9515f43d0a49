// SPDX-License-Identifier: MIT
// What `run --workload shared-life` prints: the run, the transition table
// the MMU's own trace filled, and the verdict.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vm/direct_mmu.h"
#include "workload/shared_life.h"

namespace mirrormmu {

std::string format_shared_summary(const SharedLifeConfig& cfg, const SharedLifeResult& r, DirectMmu& mmu);
// `compare --mmu A,B`: each MMU's counts side by side, differing rows marked.
struct SharedColumn {
  SharedLifeResult result;
  DirectMmu* stats_of;  // the MMU that ran (its name and counters)
};
std::string format_shared_compare(const SharedLifeConfig& cfg, const std::vector<SharedColumn>& cols);

nlohmann::json shared_summary_json(const SharedLifeConfig& cfg, const SharedLifeResult& r, DirectMmu& mmu);

}  // namespace mirrormmu
