// SPDX-License-Identifier: MIT
// `mirrormmu compare`: the same workload and seed under several hook
// designs, side by side.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mirrormmu {

struct CompareColumn {
  std::string design;
  std::string refused;      // why the design could not run this workload (empty: it ran)
  nlohmann::json summary;   // summary_json() of the run
};

// One table: a row per fact (hook calls by kind, SEAMCALLs by leaf and
// status, lock acquisitions, transitions by class, bug/warn sites, invariant
// failures, time), a column per design. Rows every column has as zero are
// left out.
std::string format_compare(const std::vector<CompareColumn>& cols);

}  // namespace mirrormmu
