// SPDX-License-Identifier: MIT
// Chrome trace-event JSON of one execution (opens in Perfetto and
// chrome://tracing): a track per thread, spans for lock holds, complete
// events for SEAMCALLs, instant events for SPTE changes and the rest.
// Time is the engine's step counter, one step shown as one microsecond.
#pragma once

#include <nlohmann/json.hpp>

#include "explore/execution.h"

namespace mirrormmu {

nlohmann::json perfetto_trace(const explore::ExecResult& r);

}  // namespace mirrormmu
