// SPDX-License-Identifier: MIT
#include "report/perfetto.h"

namespace mirrormmu {

nlohmann::json perfetto_trace(const explore::ExecResult& r) {
  using nlohmann::json;
  using Kind = explore::TraceEvent::Kind;
  json events = json::array();
  // Thread names first, so every track is labelled.
  for (size_t t = 0; t < r.thread_names.size(); t++)
    events.push_back({{"ph", "M"}, {"name", "thread_name"}, {"pid", 1}, {"tid", t + 1},
                      {"args", {{"name", r.thread_names[t]}}}});
  events.push_back({{"ph", "M"}, {"name", "thread_name"}, {"pid", 1}, {"tid", 0}, {"args", {{"name", "main"}}}});
  // Time here is the deterministic scheduler's step count, not wall time:
  // the viewer's microseconds read as steps.
  events.push_back({{"ph", "M"}, {"name", "process_name"}, {"pid", 1},
                    {"args", {{"name", "mirrormmu execution (time axis: scheduling steps, 1 us = 1 step)"}}}});
  for (const auto& e : r.trace) {
    json j = {{"name", e.name}, {"pid", 1}, {"tid", e.thread + 1}, {"ts", e.step}, {"args", {{"event", e.text}}}};
    switch (e.kind) {
      case Kind::Begin: j["ph"] = "B"; break;
      case Kind::End: j["ph"] = "E"; break;
      case Kind::Complete:
        j["ph"] = "X";
        j["dur"] = 1;
        break;
      case Kind::Instant:
        j["ph"] = "i";
        j["s"] = "t";
        break;
    }
    events.push_back(std::move(j));
  }
  return {{"traceEvents", events}, {"displayTimeUnit", "ns"},
          {"otherData", {{"invariant", r.invariant}, {"ok", r.ok}, {"time_axis", "scheduling steps"}}}};
}

}  // namespace mirrormmu
