// SPDX-License-Identifier: MIT
// Races on a plain VM's direct root, explored under the deterministic engine
// on any DirectMmu: the model's plain VM or, with --mmu kernel, the kernel
// tree's own tdp_mmu.c (whose locks, RCU and SPTE accesses are scheduling
// points of the same engine). Names "plain:MMU:SCENARIO" resolve for explore
// and replay, so a failure on the real code replays from its string.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "explore/explorer.h"

namespace mirrormmu {

struct PlainScenarioInfo {
  std::string name;
  std::string description;
};
const std::vector<PlainScenarioInfo>& plain_scenarios();

// "plain:" + mmu + ":" + scenario
std::string plain_source_name(const std::string& mmu, const std::string& scenario);

// Lets explore and replay resolve "plain:..." names.
void register_plain_source();

}  // namespace mirrormmu
