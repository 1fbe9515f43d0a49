// SPDX-License-Identifier: MIT
#include "explore/explorer.h"

#include "base/printable.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <sstream>

namespace mirrormmu::explore {

namespace {

ExecConfig exec_config(const Schedule& s, bool trace) {
  ExecConfig c;
  c.design = s.design;
  c.trace = trace;
  for (size_t k = 0; k < sync::kFailKindCount; k++) c.limits.fail_budget[k] = s.fail_budget[k];
  return c;
}

std::vector<std::pair<std::string, SourceResolver>>& resolvers() {
  static std::vector<std::pair<std::string, SourceResolver>> r;
  return r;
}

std::optional<ExecResult> run_schedule(const Schedule& s, bool trace, std::string* error) {
  std::string err;
  auto src = resolve_source(s.scenario, s.scale, s.design, &err);
  if (!src) {
    if (error) *error = err;
    return std::nullopt;
  }
  ReplayStrategy strat(s.choices);
  return src->run(strat, exec_config(s, trace));
}

bool still_fails(const Schedule& s, const std::string& invariant) {
  auto r = run_schedule(s, false, nullptr);
  return r && !r->ok && r->invariant == invariant;
}

}  // namespace

void register_source(const std::string& prefix, SourceResolver resolver) {
  resolvers().emplace_back(prefix, resolver);
}

std::optional<ExecutionSource> resolve_source(const std::string& name, int scale, const std::string& design,
                                              std::string* error) {
  for (const auto& [prefix, resolve] : resolvers())
    if (name.rfind(prefix, 0) == 0) return resolve(name, design, error);
  auto sc = load_scenario(name, scale, error);
  if (!sc) return std::nullopt;
  VmConfig vc;
  if (!parse_design_spec(design, &vc.design, &vc.what_if, error)) return std::nullopt;
  vc.huge_pages = sc->huge_pages;
  if (std::string why = vm_config_refusal(vc); !why.empty()) {
    if (error) *error = "scenario " + sc->name + ": " + why;
    return std::nullopt;
  }
  const int threads = static_cast<int>(sc->threads.size());
  return ExecutionSource{[sc = std::move(*sc)](sync::DetStrategy& st, const ExecConfig& ec) {
                           return run_execution(sc, st, ec);
                         },
                         threads};
}

// The budgets in FailKind order; the first four always, the rest only up to
// the last one that is set.
std::string Schedule::str() const {
  size_t n = 4;
  for (size_t k = 4; k < sync::kFailKindCount; k++)
    if (fail_budget[k]) n = k + 1;
  std::string f;
  for (size_t k = 0; k < n; k++) f += (k ? "," : "") + std::to_string(fail_budget[k]);
  return fmt::format("{}/{}/s{}/f{}/{}", scenario, design, scale, f, encode_choices(choices));
}

std::optional<Schedule> Schedule::parse(const std::string& str, std::string* error) {
  std::vector<std::string> parts;
  std::stringstream ss(str);
  std::string p;
  while (std::getline(ss, p, '/')) parts.push_back(p);
  // A scenario file path may itself contain '/': the last four parts are fixed.
  if (parts.size() < 5) {
    *error = "a schedule looks like SCENARIO/DESIGN/sSCALE/fB,T,C,Y[,E,R,S,P,I]/CHOICES, got '" + printable(str) + "'";
    return std::nullopt;
  }
  Schedule s;
  const size_t n = parts.size();
  for (size_t i = 0; i + 4 < n; i++) s.scenario += (i ? "/" : "") + parts[i];
  s.design = parts[n - 4];
  const std::string& sc = parts[n - 3];
  const std::string& fb = parts[n - 2];
  try {
    if (sc.size() < 2 || sc[0] != 's' || sc.find_first_not_of("0123456789", 1) != std::string::npos)
      throw std::runtime_error("scale");
    s.scale = std::stoi(sc.substr(1));
    if (fb.size() < 2 || fb[0] != 'f') throw std::runtime_error("budgets");
    std::stringstream fs(fb.substr(1));
    std::string b;
    size_t k = 0;
    while (std::getline(fs, b, ',')) {
      if (k >= sync::kFailKindCount || b.empty() || b.find_first_not_of("0123456789") != std::string::npos)
        throw std::runtime_error("budgets");
      if (b.size() > 3 || std::stoul(b) > 64) throw std::runtime_error("budgets");
      s.fail_budget[k++] = static_cast<uint32_t>(std::stoul(b));
    }
    if (k < 4) throw std::runtime_error("budgets");
  } catch (...) {
    *error = "bad scale or failure budgets in schedule '" + printable(str) + "'";
    return std::nullopt;
  }
  auto c = decode_choices(parts[n - 1]);
  if (!c || s.scale < 1 || s.scale > 64) {
    *error = "bad choices or scale in schedule '" + printable(str) + "'";
    return std::nullopt;
  }
  s.choices = *c;
  return s;
}

std::optional<ExecResult> replay(const Schedule& s, std::string* error) { return run_schedule(s, true, error); }

Schedule shrink(const Schedule& failing, const std::string& invariant, uint64_t* runs) {
  Schedule best = failing;
  uint64_t n = 0;
  constexpr uint64_t kMaxRuns = 400;
  // Fewer operations first: a smaller world usually needs fewer choices.
  for (int scale = 1; scale < best.scale && n < kMaxRuns; scale++) {
    Schedule t = best;
    t.scale = scale;
    n++;
    if (still_fails(t, invariant)) {
      best = t;
      break;
    }
  }
  // Then drop deviations (preemptions, injected failures) one at a time,
  // latest first, until no single one can go.
  for (bool changed = true; changed && n < kMaxRuns;) {
    changed = false;
    for (auto it = best.choices.rbegin(); it != best.choices.rend() && n < kMaxRuns; ++it) {
      Schedule t = best;
      t.choices.erase(it->first);
      n++;
      if (still_fails(t, invariant)) {
        best = t;
        changed = true;
        break;
      }
    }
  }
  // Finally, failure budgets no larger than needed: the choices name their
  // failure points by kind and ordinal, so the budget of a kind can drop to
  // the number of its choices left without renumbering anything.
  {
    Schedule t = best;
    for (size_t k = 0; k < sync::kFailKindCount; k++) t.fail_budget[k] = 0;
    for (const auto& [key, v] : t.choices)
      if (sync::is_fail_key(key)) t.fail_budget[static_cast<size_t>(sync::key_fail_kind(key))]++;
    if (t.fail_budget != best.fail_budget && n < kMaxRuns) {
      n++;
      if (still_fails(t, invariant)) best = t;
    }
  }
  for (size_t k = 0; k < sync::kFailKindCount && n < kMaxRuns; k++) {
    while (best.fail_budget[k] > 0 && n < kMaxRuns) {
      Schedule t = best;
      t.fail_budget[k]--;
      n++;
      if (!still_fails(t, invariant)) break;
      best = t;
    }
  }
  if (runs) *runs = n;
  return best;
}

std::optional<ExploreReport> merge_reports(const std::vector<std::pair<int, ExploreReport>>& shards, int nshards,
                                           size_t max_failures, std::string* error) {
  std::vector<const ExploreReport*> by_index(static_cast<size_t>(std::max(nshards, 0)), nullptr);
  for (const auto& [i, r] : shards) {
    if (i < 0 || i >= nshards) {
      *error = fmt::format("shard {} is not one of 0..{}", i, nshards - 1);
      return std::nullopt;
    }
    if (by_index[static_cast<size_t>(i)]) {
      *error = fmt::format("shard {}/{} given twice", i, nshards);
      return std::nullopt;
    }
    by_index[static_cast<size_t>(i)] = &r;
  }
  for (int i = 0; i < nshards; i++)
    if (!by_index[static_cast<size_t>(i)]) {
      *error = fmt::format("shard {}/{} is missing", i, nshards);
      return std::nullopt;
    }
  ExploreReport m;
  m.exhausted = true;
  for (const ExploreReport* r : by_index) {
    m.executions += r->executions;
    m.pruned += r->pruned;
    m.seconds = std::max(m.seconds, r->seconds);
    m.exhausted = m.exhausted && r->exhausted;
    m.max_steps = std::max(m.max_steps, r->max_steps);
    if (r->max_decisions > m.max_decisions) {
      m.max_decisions = r->max_decisions;
      m.max_decisions_by_thread = r->max_decisions_by_thread;
    }
    m.classes |= r->classes;
    for (size_t i = 0; i < kSiteCount; i++) m.sites[i] += r->sites[i];
    for (size_t k = 0; k < sync::kFailKindCount; k++) {
      m.fired[k] += r->fired[k];
      m.executions_with_fired[k] += r->executions_with_fired[k];
    }
    for (const Failure& f : r->failures) {
      if (m.failures.size() >= max_failures) break;
      const bool seen = std::any_of(m.failures.begin(), m.failures.end(),
                                    [&](const Failure& g) { return g.result.invariant == f.result.invariant; });
      if (!seen) m.failures.push_back(f);
    }
    if (r->executions) m.last = r->last;
  }
  return m;
}

std::optional<ExploreReport> explore(const ExploreConfig& cfg, const Progress& progress, std::string* error) {
  auto src = resolve_source(cfg.scenario, cfg.scale, cfg.design, error);
  if (!src) return std::nullopt;
  ExploreReport rep;
  const auto t0 = std::chrono::steady_clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  Schedule base{cfg.scenario, cfg.design, cfg.scale, cfg.fail_budget, {}};
  ExecConfig ec = exec_config(base, false);
  if (cfg.max_steps) ec.limits.max_steps = cfg.max_steps;
  ec.limits.fast_forward = cfg.fast_forward;
  std::mt19937_64 seeds(cfg.seed);

  auto record = [&](const ExecResult& r) {
    rep.executions++;
    rep.last = base;
    rep.last.choices = r.choices;
    if (cfg.on_execution) cfg.on_execution(r, rep.last);
    for (size_t k = 0; k < sync::kFailKindCount; k++) {
      rep.fired[k] += r.fired_by_kind[k];
      rep.executions_with_fired[k] += r.fired_by_kind[k] != 0;
    }
    rep.max_steps = std::max(rep.max_steps, r.steps);
    if (r.decisions > rep.max_decisions || rep.executions == 1) {
      rep.max_decisions_by_thread.clear();
      // A workload spawns a thread per operation: one line per name.
      for (size_t t = 0; t < r.thread_names.size() && t < r.decisions_by_thread.size(); t++) {
        if (!r.decisions_by_thread[t]) continue;
        auto& v = rep.max_decisions_by_thread;
        auto it = std::find_if(v.begin(), v.end(), [&](const auto& p) { return p.first == r.thread_names[t]; });
        if (it == v.end()) v.emplace_back(r.thread_names[t], r.decisions_by_thread[t]);
        else it->second += r.decisions_by_thread[t];
      }
    }
    rep.max_decisions = std::max(rep.max_decisions, r.decisions);
    rep.classes |= r.classes;
    for (size_t i = 0; i < kSiteCount; i++) rep.sites[i] += r.sites[i] != 0;
    if (!r.ok && rep.failures.size() < cfg.max_failures) {
      for (const auto& f : rep.failures)
        if (f.result.invariant == r.invariant) return;
      Failure f;
      f.original = base;
      f.original.choices = r.choices;
      f.schedule = cfg.shrink ? shrink(f.original, r.invariant, &f.shrink_runs) : f.original;
      f.result = *run_schedule(f.schedule, true, nullptr);
      rep.failures.push_back(std::move(f));
    }
    if (progress && (rep.executions & 63) == 0) {
      rep.seconds = elapsed();
      progress(rep);
    }
  };
  auto done = [&] {
    return rep.executions >= cfg.budget || (cfg.seconds > 0 && elapsed() >= cfg.seconds) ||
           rep.failures.size() >= cfg.max_failures;
  };

  if (cfg.strategy == StrategyKind::Dfs) {
    // Iterative context bounding: every schedule with 0 preemptions, then 1, ...
    for (int bound = 0; bound <= cfg.preemptions && !done(); bound++) {
      DfsStrategy dfs(bound, cfg.shard, cfg.shards, cfg.reduction, cfg.dpor);
      bool more = true;
      // Executions another shard owns are run here only to learn the tree.
      while (more && !done()) {
        const ExecResult r = src->run(dfs, ec);
        if (dfs.owns_current()) record(r);
        more = dfs.next();
      }
      rep.pruned += dfs.pruned();
      rep.pruned_by_races += dfs.pruned_by_races();
      if (!more && bound == cfg.preemptions) rep.exhausted = true;
    }
  } else {
    // Executions the whole (unsharded) search has run: each shard runs its
    // N-th of them and counts the budget against the whole.
    uint64_t index = 0;
    const auto mine = [&] { return index++ % static_cast<uint64_t>(cfg.shards) == static_cast<uint64_t>(cfg.shard); };
    const auto all_done = [&] {
      return index >= cfg.budget || (cfg.seconds > 0 && elapsed() >= cfg.seconds) ||
             rep.failures.size() >= cfg.max_failures;
    };
    // PCT needs the number of decisions to expect: learn it from a default run.
    uint64_t steps_estimate = 0;
    if (cfg.strategy == StrategyKind::Pct) {
      ReplayStrategy def({});
      const ExecResult r0 = src->run(def, ec);
      steps_estimate = std::max<uint64_t>(r0.decisions, 1);
      if (mine()) record(r0);
    }
    while (!all_done()) {
      const uint64_t seed = seeds();
      if (!mine()) continue;
      const double fail_p = 0.05;
      if (cfg.strategy == StrategyKind::Pct) {
        PctStrategy pct(seed, cfg.depth, steps_estimate, src->threads, fail_p);
        record(src->run(pct, ec));
      } else {
        RandomStrategy rnd(seed, fail_p);
        record(src->run(rnd, ec));
      }
    }
  }
  rep.seconds = elapsed();
  return rep;
}

}  // namespace mirrormmu::explore
