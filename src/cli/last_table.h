// SPDX-License-Identifier: MIT
// Which designs reached each site in the last `mirrormmu table` run, kept in
// the user's cache directory (never in the repository) for `mirrormmu sites`.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "report/table.h"

namespace mirrormmu::cli {

struct LastTable {
  std::string computed;  // UTC time of the computation, per design merged
  std::map<std::string, std::vector<std::string>> reached;  // site id -> designs
  std::map<std::string, std::vector<std::string>> driven;   // only when driven directly
  std::string path;
};

// $MIRRORMMU_CACHE_DIR, else $XDG_CACHE_HOME/mirrormmu, else ~/.cache/mirrormmu.
std::string last_table_path();
// Merges these designs into the file (other designs' entries stay).
void save_last_table(const std::vector<report::DesignTable>& tables);
std::optional<LastTable> load_last_table();

}  // namespace mirrormmu::cli
