// SPDX-License-Identifier: MIT
// The explorer's end-of-run report and its progress line.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "explore/explorer.h"

namespace mirrormmu {

std::string format_explore_report(const explore::ExploreConfig& cfg, const explore::ExploreReport& r);
// The same report as JSON (explore --json).
nlohmann::json explore_report_json(const explore::ExploreConfig& cfg, const explore::ExploreReport& r);
std::string format_progress(const explore::ExploreReport& r);
// Reads back what explore_report_json() wrote: the search (into *cfg, with
// its shard) and what it found. False with a one-line *error for anything
// that is not such a report.
bool explore_report_from_json(const nlohmann::json& j, explore::ExploreConfig* cfg, explore::ExploreReport* r,
                              std::string* error);
// Why two reports are not parts of one search ("" if they are): the first
// field that differs, named.
std::string explore_search_mismatch(const explore::ExploreConfig& a, const explore::ExploreConfig& b);

}  // namespace mirrormmu
