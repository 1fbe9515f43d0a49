// SPDX-License-Identifier: MIT
#include "report/explore_report.h"

#include <fmt/format.h>

namespace mirrormmu {

namespace {

constexpr const char* kStrategy[] = {"dfs", "pct", "random"};
// What a report's "version" says: the tool and the report's own format.
const std::string& report_version() {
  static const std::string v = std::string("mirrormmu ") + MIRRORMMU_VERSION + ", explore report 3";
  return v;
}

}  // namespace

std::string format_progress(const explore::ExploreReport& r) {
  return fmt::format("explored {} executions, {} transition classes, {} failures, {:.0f} exec/s", r.executions,
                     r.classes.count(), r.failures.size(), r.seconds > 0 ? double(r.executions) / r.seconds : 0.0);
}

std::string format_explore_report(const explore::ExploreConfig& cfg, const explore::ExploreReport& r) {
  std::string out;
  auto line = [&](const std::string& s) { out += s + "\n"; };
  line(fmt::format("scenario {} (scale {}), design {}, strategy {}{}{}", cfg.scenario, cfg.scale, cfg.design,
                   kStrategy[static_cast<int>(cfg.strategy)],
                   cfg.strategy == explore::StrategyKind::Dfs ? fmt::format(" up to {} preemptions", cfg.preemptions)
                   : cfg.strategy == explore::StrategyKind::Pct ? fmt::format(" depth {}", cfg.depth)
                                                                 : std::string(),
                   cfg.shards > 1 ? fmt::format(", shard {}/{}", cfg.shard, cfg.shards) : std::string()));
  std::string by;
  for (const auto& [name, n] : r.max_decisions_by_thread) by += fmt::format("{}{} {}", by.empty() ? "" : ", ", name, n);
  line(fmt::format("executions: {}{} in {:.2f} s ({:.0f} exec/s); longest: {} steps, {} decisions{}",
                   r.executions, r.exhausted ? " (every schedule within the bound)" : "", r.seconds,
                   r.seconds > 0 ? double(r.executions) / r.seconds : 0.0, r.max_steps, r.max_decisions,
                   by.empty() ? "" : " (taken in " + by + ")"));
  if (cfg.strategy == explore::StrategyKind::Dfs)
    line(cfg.dpor ? fmt::format("pruned by DPOR: {} branches no race asked for, each at least one execution "
                                "equivalent to one explored",
                                r.pruned_by_races)
         : cfg.reduction ? fmt::format("pruned by sleep sets: {} branches, each at least one execution equivalent "
                                       "to one explored",
                                       r.pruned)
                         : std::string("reduction: off (--no-reduction)"));
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
    line(f.result.where.empty() ? fmt::format("  {}: {}", f.result.invariant, f.result.detail)
                                : fmt::format("  {}: {} (after {})", f.result.invariant, f.result.detail, f.result.where));
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
                        {"shrink_runs", f.shrink_runs},
                        {"original", f.original.str()},
                        {"replay", "mirrormmu replay " + f.schedule.str()}});
  json by_thread = json::array();
  for (const auto& [name, n] : r.max_decisions_by_thread) by_thread.push_back({name, n});
  json search = {{"strategy", kStrategy[static_cast<int>(cfg.strategy)]},
                 {"preemptions", cfg.preemptions},
                 {"reduction", cfg.reduction},
                 {"dpor", cfg.dpor},
                 {"depth", cfg.depth},
                 {"seed", cfg.seed},
                 {"budget", cfg.budget},
                 {"fail_budget", cfg.fail_budget},
                 {"max_failures", cfg.max_failures},
                 {"shard", {cfg.shard, cfg.shards}}};
  return {{"version", report_version()},
          {"scenario", cfg.scenario}, {"scale", cfg.scale},       {"design", cfg.design},
          {"search", search},
          {"executions", r.executions}, {"seconds", r.seconds},   {"exhausted", r.exhausted},
          {"pruned", r.pruned},
          {"max_steps", r.max_steps},   {"max_decisions", r.max_decisions},
          {"max_decisions_by_thread", by_thread},
          {"last", r.last.str()},
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

bool explore_report_from_json(const nlohmann::json& j, explore::ExploreConfig* cfg, explore::ExploreReport* r,
                              std::string* error) {
  try {
    if (!j.is_object() || !j.contains("version")) throw std::runtime_error("not an explore --json report");
    if (j.at("version").get<std::string>() != report_version())
      throw std::runtime_error("written by " + j.at("version").get<std::string>() + ", this is " + report_version());
    *cfg = explore::ExploreConfig{};
    cfg->scenario = j.at("scenario").get<std::string>();
    cfg->scale = j.at("scale").get<int>();
    cfg->design = j.at("design").get<std::string>();
    const auto& s = j.at("search");
    const std::string strategy = s.at("strategy").get<std::string>();
    size_t k = 0;
    while (k < 3 && strategy != kStrategy[k]) k++;
    if (k == 3) throw std::runtime_error("unknown strategy '" + strategy + "'");
    cfg->strategy = static_cast<explore::StrategyKind>(k);
    cfg->preemptions = s.at("preemptions").get<int>();
    cfg->reduction = s.at("reduction").get<bool>();
    cfg->dpor = s.value("dpor", false);
    cfg->depth = s.at("depth").get<int>();
    cfg->seed = s.at("seed").get<uint64_t>();
    cfg->budget = s.at("budget").get<uint64_t>();
    cfg->fail_budget = s.at("fail_budget").get<std::array<uint32_t, sync::kFailKindCount>>();
    cfg->max_failures = s.at("max_failures").get<size_t>();
    cfg->shard = s.at("shard").at(0).get<int>();
    cfg->shards = s.at("shard").at(1).get<int>();
    if (cfg->shards < 1 || cfg->shard < 0 || cfg->shard >= cfg->shards) throw std::runtime_error("bad shard");

    *r = explore::ExploreReport{};
    r->executions = j.at("executions").get<uint64_t>();
    r->seconds = j.at("seconds").get<double>();
    r->exhausted = j.at("exhausted").get<bool>();
    r->pruned = j.at("pruned").get<uint64_t>();
    r->max_steps = j.at("max_steps").get<uint64_t>();
    r->max_decisions = j.at("max_decisions").get<uint64_t>();
    for (const auto& p : j.at("max_decisions_by_thread"))
      r->max_decisions_by_thread.emplace_back(p.at(0).get<std::string>(), p.at(1).get<uint64_t>());
    std::string err;
    const auto schedule = [&](const std::string& str) {
      auto sc = explore::Schedule::parse(str, &err);
      if (!sc) throw std::runtime_error(err);
      return *sc;
    };
    r->last = schedule(j.at("last").get<std::string>());
    for (const auto& name : j.at("classes")) {
      size_t i = 0;
      while (i < TransitionCounts::kClasses && TransitionCounts::at(i).name() != name.get<std::string>()) i++;
      if (i == TransitionCounts::kClasses) throw std::runtime_error("unknown transition class " + name.dump());
      r->classes.set(i);
    }
    for (const auto& [id, n] : j.at("sites").items()) {
      size_t i = 0;
      while (i < kSiteCount && site_info(static_cast<Site>(i)).id != id) i++;
      if (i == kSiteCount) throw std::runtime_error("unknown site '" + id + "'");
      r->sites[i] = n.get<uint64_t>();
    }
    for (const auto& f : j.at("failures")) {
      explore::Failure x;
      x.result.ok = false;
      x.result.invariant = f.at("invariant").get<std::string>();
      x.result.detail = f.at("detail").get<std::string>();
      x.result.where = f.at("after").get<std::string>();
      x.result.steps = f.at("steps").get<uint64_t>();
      x.result.preemptions = f.at("preemptions").get<uint64_t>();
      x.shrink_runs = f.at("shrink_runs").get<uint64_t>();
      x.original = schedule(f.at("original").get<std::string>());
      const std::string replay = f.at("replay").get<std::string>();
      const std::string prefix = "mirrormmu replay ";
      if (replay.rfind(prefix, 0) != 0) throw std::runtime_error("bad replay string");
      x.schedule = schedule(replay.substr(prefix.size()));
      r->failures.push_back(std::move(x));
    }
    for (size_t kk = 0; kk < sync::kFailKindCount; kk++) {
      const auto& inj = j.at("injected").at(sync::fail_kind_name(static_cast<sync::FailKind>(kk)));
      r->fired[kk] = inj.at("fired").get<uint64_t>();
      r->executions_with_fired[kk] = inj.at("executions").get<uint64_t>();
    }
  } catch (const std::exception& e) {
    *error = e.what();
    return false;
  }
  return true;
}

std::string explore_search_mismatch(const explore::ExploreConfig& a, const explore::ExploreConfig& b) {
  if (a.scenario != b.scenario) return fmt::format("scenario {} vs {}", a.scenario, b.scenario);
  if (a.design != b.design) return fmt::format("design {} vs {}", a.design, b.design);
  if (a.scale != b.scale) return fmt::format("scale {} vs {}", a.scale, b.scale);
  if (a.strategy != b.strategy)
    return fmt::format("strategy {} vs {}", kStrategy[static_cast<int>(a.strategy)], kStrategy[static_cast<int>(b.strategy)]);
  if (a.preemptions != b.preemptions) return fmt::format("preemptions {} vs {}", a.preemptions, b.preemptions);
  if (a.reduction != b.reduction) return "one search reduced by sleep sets, the other not (--no-reduction)";
  if (a.dpor != b.dpor) return "one search reduced by DPOR, the other not (--dpor)";
  if (a.depth != b.depth) return fmt::format("depth {} vs {}", a.depth, b.depth);
  if (a.seed != b.seed) return fmt::format("seed {} vs {}", a.seed, b.seed);
  if (a.budget != b.budget) return fmt::format("budget {} vs {}", a.budget, b.budget);
  if (a.fail_budget != b.fail_budget) return "failure budgets differ";
  if (a.max_failures != b.max_failures) return "max failures differ";
  if (a.shards != b.shards) return fmt::format("{} shards vs {}", a.shards, b.shards);
  return "";
}

}  // namespace mirrormmu
