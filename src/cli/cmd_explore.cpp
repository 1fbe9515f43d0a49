// SPDX-License-Identifier: MIT
// mirrormmu explore, mirrormmu replay
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <thread>

#include "cli/common.h"
#include "explore/explorer.h"
#include "mmu/design.h"
#include "report/explore_report.h"
#include <cmath>

#include "report/perfetto.h"
#include "workload/explored.h"
#include "workload/plain_explored.h"

namespace mirrormmu::cli {

namespace {

explore::ExploreConfig g_cfg;
std::string g_strategy = "dfs";
std::string g_perfetto;
std::string g_json;
std::string g_what_if;
std::string g_schedule;
std::string g_replay_perfetto;
WorkloadConfig g_workload;  // name empty: explore a scenario
bool g_tdx_pool = false;    // --tdx-pool, with --workload
CLI::Option* g_scenario_opt = nullptr;
std::string g_mmu;  // empty: a TD scenario on the model
std::string g_shard;  // "I/N"
int g_jobs = 0;       // 0: one per core

// "I/N" with 0 <= I < N <= 4096, digits only; false otherwise.
bool parse_shard(const std::string& s, int* i, int* n) {
  const size_t slash = s.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == s.size() || slash > 4 || s.size() - slash > 5) return false;
  const std::string a = s.substr(0, slash), b = s.substr(slash + 1);
  if (a.find_first_not_of("0123456789") != std::string::npos || b.find_first_not_of("0123456789") != std::string::npos)
    return false;
  *i = std::stoi(a);
  *n = std::stoi(b);
  return *n >= 1 && *n <= 4096 && *i < *n;
}

std::string scenarios_help() {
  std::string s = "a scenario file (JSON, see scenarios/) or a built-in scenario:";
  for (const auto& b : explore::builtin_scenarios()) s += fmt::format("\n  {:<20} {}", b.name, b.description);
  s += "\nwith --mmu, a plain VM's race (its direct root only):";
  for (const auto& p : plain_scenarios()) s += fmt::format("\n  {:<20} {}", p.name, p.description);
  return s;
}

void write_perfetto(const std::string& path, const explore::ExecResult& r) {
  std::ofstream f(path);
  if (!f) usage_error("cannot write '" + path + "'");
  f << perfetto_trace(r).dump() << "\n";
}

int run_explore() {
  explore::ExploreConfig cfg = g_cfg;
  if (g_strategy == "dfs") cfg.strategy = explore::StrategyKind::Dfs;
  else if (g_strategy == "pct") cfg.strategy = explore::StrategyKind::Pct;
  else if (g_strategy == "random") cfg.strategy = explore::StrategyKind::Random;
  else usage_error("--strategy must be dfs, pct or random");
  if (!g_shard.empty() && !parse_shard(g_shard, &cfg.shard, &cfg.shards))
    usage_error("--shard must be I/N with 0 <= I < N <= 4096, got '" + g_shard + "'");
  {
    std::string design, error;
    WhatIf w;
    if (!parse_design_spec(cfg.design, &design, &w, &error) || !parse_what_ifs(g_what_if, &w, &error))
      usage_error(error);
    cfg.design = design_spec(design, w);
  }
  if (!(cfg.seconds >= 0) || !std::isfinite(cfg.seconds)) usage_error(fmt::format("--time must be a number of seconds >= 0, got {}", cfg.seconds));
  check_output_path("--json", g_json);
  check_output_path("--perfetto", g_perfetto);
  if (!g_mmu.empty()) {
    if (!g_workload.name.empty()) usage_error("--mmu explores a plain VM's race (--scenario), not a TD workload");
    bool known = false;
    for (const auto& p : plain_scenarios()) known |= p.name == cfg.scenario;
    if (!known) {
      std::string names;
      for (const auto& p : plain_scenarios()) names += (names.empty() ? "" : ", ") + p.name;
      usage_error("--mmu " + g_mmu + ": '" + cfg.scenario + "' is not a plain VM's race (" + names + ")");
    }
    cfg.scenario = plain_source_name(g_mmu, cfg.scenario);
  }
  if (g_workload.name.empty() && (g_workload.huge_pages || g_workload.dynamic_pamt || g_tdx_pool))
    usage_error("--huge-pages, --dpamt and --tdx-pool shape a --workload's TD; a scenario fixes its own");
  if (!g_workload.name.empty()) {
    if (g_scenario_opt->count()) usage_error("--scenario and --workload name two different things to explore; give one");
    if (!find_workload(g_workload.name)) usage_error("--workload: no workload named '" + g_workload.name + "'");
    if (!(g_workload.gib > 0) || g_workload.gib > 64) usage_error("--gib must be in (0, 64]");
    if (g_tdx_pool) g_workload.external_spt_policy = ExternalSptPolicy::TdxPool;
    cfg.scenario = workload_source_name(g_workload);
  }
  const bool tty = isatty(STDERR_FILENO);
  std::string error;
  if (cfg.dpor) {
    if (cfg.strategy != explore::StrategyKind::Dfs) usage_error("--dpor reduces a DFS search; drop --strategy");
    if (!cfg.reduction) usage_error("--dpor is a reduction; drop --no-reduction");
    // Its backtrack points come from races the whole search meets: a shard
    // would miss those its siblings find.
    if (cfg.shards > 1) usage_error("--dpor explores in one process; drop --shard");
    if (g_jobs > 1) usage_error("--dpor explores in one process; drop --jobs");
  }
  const int jobs = cfg.dpor ? 1 : g_jobs > 0 ? g_jobs : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::optional<explore::ExploreReport> rep;
  if (jobs > 1) {
    // Refused before anything is forked: a bad scenario is one line, once.
    if (!explore::resolve_source(cfg.scenario, cfg.scale, cfg.design, &error)) usage_error(error);
    rep = explore_jobs(cfg, jobs, &error);
  } else {
    rep = explore::explore(
        cfg,
        [&](const explore::ExploreReport& r) {
          if (tty) std::fprintf(stderr, "\r%s", format_progress(r).c_str());
        },
        &error);
    if (tty) std::fprintf(stderr, "\r\033[K");
  }
  if (!rep) usage_error(error);
  std::fputs(format_explore_report(cfg, *rep).c_str(), stdout);
  if (!g_perfetto.empty()) {
    // The first failure's trace; with none, the last execution's, re-run
    // with the trace on.
    if (!rep->failures.empty()) {
      write_perfetto(g_perfetto, rep->failures.front().result);
    } else if (auto last = explore::replay(rep->last, &error)) {
      write_perfetto(g_perfetto, *last);
    } else {
      usage_error("--perfetto: " + error);
    }
  }
  if (!g_json.empty()) {
    std::ofstream f(g_json);
    if (!f) usage_error("cannot write '" + g_json + "'");
    f << explore_report_json(cfg, *rep).dump(2) << "\n";
  }
  return rep->ok() ? 0 : 1;
}

int run_replay() {
  check_output_path("--perfetto", g_replay_perfetto);
  std::string error;
  auto s = explore::Schedule::parse(g_schedule, &error);
  if (!s) usage_error(error);
  {
    std::string design, error;
    WhatIf w;
    if (!parse_design_spec(s->design, &design, &w, &error)) usage_error(error);
  }
  auto r = explore::replay(*s, &error);
  if (!r) usage_error(error);
  std::printf("replay %s\n", s->str().c_str());
  std::printf("   step  thread   event\n");
  std::fputs(explore::format_trace(*r).c_str(), stdout);
  std::printf("%llu steps, %llu decisions, %llu preemptions, %u injected failures\n",
              static_cast<unsigned long long>(r->steps), static_cast<unsigned long long>(r->decisions),
              static_cast<unsigned long long>(r->preemptions), r->fails_fired);
  if (r->ok) {
    std::printf("result: OK\n");
  } else {
    std::printf("result: FAILED: %s: %s (after %s)\n", r->invariant.c_str(), r->detail.c_str(), r->where.c_str());
  }
  if (!g_replay_perfetto.empty()) write_perfetto(g_replay_perfetto, *r);
  return r->ok ? 0 : 1;
}

}  // namespace

Command add_explore(CLI::App& app) {
  explore::ExploreConfig& c = g_cfg;
  auto* cmd = app.add_subcommand("explore", "explore interleavings of a scenario under the deterministic scheduler");
  g_scenario_opt = cmd->add_option("--scenario", c.scenario, scenarios_help())->capture_default_str();
  g_workload = WorkloadConfig{};
  g_workload.name.clear();
  g_workload.gib = 0.01;
  g_tdx_pool = false;
  cmd->add_option("--workload", g_workload.name,
                  "explore a whole workload instead of a scenario (td-life, td-tiny): every operation of a native "
                  "run as virtual threads, setup and teardown included; its schedule strings replay like any other");
  cmd->add_option("--gib", g_workload.gib, "with --workload: guest RAM of the TD in GiB")->capture_default_str();
  cmd->add_option("--mmu", g_mmu,
                  "explore a plain VM's race (see --scenario) on 'model' (ours) or 'kernel' (the kernel tree's own "
                  "tdp_mmu.c under the same engine, in a binary built by `make oracle`); schedules replay as "
                  "'plain:MMU:SCENARIO/...'");
  cmd->add_option("--vcpus", g_workload.vcpus, "with --workload: vCPUs")->check(CLI::Range(1, 8))
      ->capture_default_str();
  cmd->add_flag("--huge-pages", g_workload.huge_pages, "with --workload: 2M private mappings");
  cmd->add_flag("--dpamt", g_workload.dynamic_pamt, "with --workload: Dynamic PAMT");
  cmd->add_flag("--tdx-pool", g_tdx_pool,
                "with --workload: S-EPT pages from TDX's own pool (run's --external-spt tdx-pool)");
  cmd->add_option("--strategy", g_strategy, "dfs (bounded preemptions, exhaustive), pct or random")
      ->capture_default_str();
  cmd->add_option("--budget", c.budget, "executions at most")->check(CLI::Range(uint64_t(1), uint64_t(1) << 40))
      ->capture_default_str();
  cmd->add_option("--time", c.seconds, "seconds at most (0: no limit)");
  cmd->add_option("--design", c.design, designs_help());
  cmd->add_option("--what-if", g_what_if, what_ifs_help());
  cmd->add_option("--scale", c.scale, "operations per thread")->check(CLI::Range(1, 64))->capture_default_str();
  cmd->add_option("--preemptions", c.preemptions, "DFS preemption bound")->check(CLI::Range(0, 16))
      ->capture_default_str();
  cmd->add_flag("!--no-reduction", c.reduction,
                "DFS: run every interleaving within the bound, even those that only reorder independent steps "
                "(sleep sets prune them by default)");
  cmd->add_flag("--dpor", c.dpor,
                "DFS: also leave out sibling branches no race asks for (dynamic partial-order reduction with "
                "bounded-preemption backtracking); one process: not with --shard or --jobs above 1");
  cmd->add_flag("!--no-fast-forward", c.fast_forward,
                "take every scheduling point of a walk over never-filled entries one by one, even when no other "
                "thread is left to run (results are the same; by default such runs are passed in one go)");
  cmd->add_option("--depth", c.depth, "PCT depth")->check(CLI::Range(1, 16))->capture_default_str();
  cmd->add_option("--seed", c.seed, "seed for pct and random")->capture_default_str();
  cmd->add_option("--fail-busy", c.fail_budget[0], "SEAMCALLs that may be made to return BUSY")
      ->check(CLI::Range(0, 16));
  cmd->add_option("--fail-topup", c.fail_budget[1], "cache top-ups that may be made to fail")->check(CLI::Range(0, 16));
  cmd->add_option("--fail-cmpxchg", c.fail_budget[2], "cmpxchgs that may be made to lose")->check(CLI::Range(0, 16));
  cmd->add_option("--fail-yield", c.fail_budget[3], "long walks that may be made to yield")->check(CLI::Range(0, 16));
  cmd->add_option("--fail-error", c.fail_budget[4],
                  "SEAMCALLs that may be made to return any other status their leaf can return (the explorer tries "
                  "each)")
      ->check(CLI::Range(0, 16));
  cmd->add_option("--fail-retry-busy", c.fail_budget[5],
                  "SEAMCALLs that may return BUSY even on the retry after kicking every vCPU out, which KVM assumes "
                  "cannot fail (opt-in)")
      ->check(CLI::Range(0, 16));
  cmd->add_option("--fail-split", c.fail_budget[6], "huge-page split table allocations that may be made to fail")
      ->check(CLI::Range(0, 16));
  cmd->add_option("--fail-pamt", c.fail_budget[7], "Dynamic PAMT page-pair top-ups that may be made to fail")
      ->check(CLI::Range(0, 16));
  cmd->add_option("--fail-interrupt", c.fail_budget[8],
                  "interruptible SEAMCALLs (DEMOTE, PROMOTE) that may find a host interrupt pending")
      ->check(CLI::Range(0, 16));
  cmd->add_flag("!--no-shrink", c.shrink, "report failures as found, unshrunk");
  cmd->add_option("--perfetto", g_perfetto,
                  "write the first failure's trace (else the last execution's) as Chrome trace JSON to FILE; "
                  "its time axis counts scheduling steps");
  cmd->add_option("--json", g_json, "also write the report as JSON to FILE");
  cmd->add_option("--jobs", g_jobs, "processes exploring parts of the search at once (0: one per core)")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  cmd->add_option("--shard", g_shard,
                  "I/N: explore a deterministic 1/N of the search (N machines or jobs each run one I); "
                  "`mirrormmu merge` puts their --json reports back together");

  auto* rep = app.add_subcommand("replay", "re-run one execution from its schedule string and print its events");
  rep->add_option("schedule", g_schedule, "the string printed by explore")->required();
  rep->add_option("--perfetto", g_replay_perfetto, "also write the execution as Chrome trace JSON to FILE");
  (void)rep;
  return {cmd, &run_explore};
}

Command add_replay(CLI::App& app) { return {app.get_subcommand("replay"), &run_replay}; }

}  // namespace mirrormmu::cli
