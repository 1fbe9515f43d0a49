// The explorer's end-of-run report and its progress line.
#pragma once

#include <string>

#include "explore/explorer.h"

namespace mirrormmu {

std::string format_explore_report(const explore::ExploreConfig& cfg, const explore::ExploreReport& r);
std::string format_progress(const explore::ExploreReport& r);

}  // namespace mirrormmu
