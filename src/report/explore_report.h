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

}  // namespace mirrormmu
