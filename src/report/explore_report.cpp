// SPDX-License-Identifier: MIT
#include "report/explore_report.h"

#include <fmt/format.h>

namespace mirrormmu {

std::string format_progress(const explore::ExploreReport& r) {
  return fmt::format("explored {} executions, {} transition classes, {} failures, {:.0f} exec/s", r.executions,
                     r.classes.count(), r.failures.size(), r.seconds > 0 ? double(r.executions) / r.seconds : 0.0);
}

std::string format_explore_report(const explore::ExploreConfig& cfg, const explore::ExploreReport& r) {
  std::string out;
  auto line = [&](const std::string& s) { out += s + "\n"; };
  static const char* kStrategy[] = {"dfs", "pct", "random"};
  line(fmt::format("scenario {} (scale {}), design {}, strategy {}{}", cfg.scenario, cfg.scale, cfg.design,
                   kStrategy[static_cast<int>(cfg.strategy)],
                   cfg.strategy == explore::StrategyKind::Dfs ? fmt::format(" up to {} preemptions", cfg.preemptions)
                   : cfg.strategy == explore::StrategyKind::Pct ? fmt::format(" depth {}", cfg.depth)
                                                                 : std::string()));
  std::string by;
  for (const auto& [name, n] : r.max_decisions_by_thread) by += fmt::format("{}{} {}", by.empty() ? "" : ", ", name, n);
  line(fmt::format("executions: {}{} in {:.2f} s ({:.0f} exec/s); longest: {} steps, {} decisions{}",
                   r.executions, r.exhausted ? " (every schedule within the bound)" : "", r.seconds,
                   r.seconds > 0 ? double(r.executions) / r.seconds : 0.0, r.max_steps, r.max_decisions,
                   by.empty() ? "" : " (taken in " + by + ")"));
  std::string fired;
  // The kinds asked for, and any other that fired (none should).
  for (size_t k = 0; k < sync::kFailKindCount; k++)
    if (cfg.fail_budget[k] || r.fired[k])
      fired += fmt::format("{}{} {} (in {} executions, budget {})", fired.empty() ? "" : ", ",
                           sync::fail_kind_name(static_cast<sync::FailKind>(k)), r.fired[k],
                           r.executions_with_fired[k], cfg.fail_budget[k]);
  line("injected failures that fired: " + (fired.empty() ? "none (no --fail-* budget given)" : fired));
  line(fmt::format("distinct SPTE transition classes seen: {}", r.classes.count()));
  for (size_t i = 0; i < TransitionCounts::kClasses; i++)
    if (r.classes[i]) line("  " + TransitionCounts::at(i).name());
  std::string sites;
  for (size_t i = 0; i < kSiteCount; i++)
    if (r.sites[i])
      sites += fmt::format("  {} {} in {} executions\n", bug_kind_name(site_info(static_cast<Site>(i)).kind),
                           site_info(static_cast<Site>(i)).id, r.sites[i]);
  line(sites.empty() ? "bug/warn sites hit: none" : "bug/warn sites hit:\n" + sites.substr(0, sites.size() - 1));
  line(fmt::format("invariant failures: {}", r.failures.size()));
  for (const auto& f : r.failures) {
    line(fmt::format("  {}: {} (after {})", f.result.invariant, f.result.detail, f.result.where));
    line(fmt::format("    shrunk from {} to {} deviations in {} runs ({} steps, {} preemptions)",
                     f.original.choices.size(), f.schedule.choices.size(), f.shrink_runs, f.result.steps,
                     f.result.preemptions));
    line(fmt::format("    replay: mirrormmu replay {}", f.schedule.str()));
  }
  line(r.ok() ? "result: OK" : "result: FAILED");
  return out;
}

nlohmann::json explore_report_json(const explore::ExploreConfig& cfg, const explore::ExploreReport& r) {
  using nlohmann::json;
  json classes = json::array();
  for (size_t i = 0; i < TransitionCounts::kClasses; i++)
    if (r.classes[i]) classes.push_back(TransitionCounts::at(i).name());
  json sites = json::object();
  for (size_t i = 0; i < kSiteCount; i++)
    if (r.sites[i]) sites[std::string(site_info(static_cast<Site>(i)).id)] = r.sites[i];
  json failures = json::array();
  for (const auto& f : r.failures)
    failures.push_back({{"invariant", f.result.invariant},
                        {"detail", f.result.detail},
                        {"after", f.result.where},
                        {"steps", f.result.steps},
                        {"preemptions", f.result.preemptions},
                        {"replay", "mirrormmu replay " + f.schedule.str()}});
  return {{"scenario", cfg.scenario}, {"scale", cfg.scale},       {"design", cfg.design},
          {"executions", r.executions}, {"seconds", r.seconds},   {"exhausted", r.exhausted},
          {"classes", classes},         {"sites", sites},         {"failures", failures},
          {"injected", [&] {
             json j = json::object();
             for (size_t k = 0; k < sync::kFailKindCount; k++)
               j[sync::fail_kind_name(static_cast<sync::FailKind>(k))] = {{"fired", r.fired[k]},
                                                                         {"executions", r.executions_with_fired[k]}};
             return j;
           }()},
          {"ok", r.ok()}};
}

}  // namespace mirrormmu
