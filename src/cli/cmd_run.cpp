// mirrormmu run
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "cli/common.h"
#include "mmu/design.h"
#include "report/summary.h"
#include "workload/runner.h"

namespace mirrormmu::cli {

namespace {

WorkloadConfig g_cfg;
std::string g_json;

std::string designs_help() {
  std::string s = "hook design, one of:";
  for (const auto& d : designs()) s += fmt::format("\n  {:<12} {}", d.name, d.description);
  return s;
}

std::string workloads_help() {
  std::string s = "workload, one of:";
  for (const auto& w : workloads()) s += fmt::format("\n  {:<12} {}", w.name, w.description);
  return s;
}

int run() {
  const WorkloadConfig& cfg = g_cfg;
  if (!find_design(cfg.design)) usage_error("unknown design '" + cfg.design + "' (see --help)");
  if (!find_workload(cfg.name)) usage_error("unknown workload '" + cfg.name + "' (see --help)");
  if (!(cfg.gib > 0) || cfg.gib > 1024 || !std::isfinite(cfg.gib))
    usage_error(fmt::format("--gib must be in (0, 1024], got {}", cfg.gib));
  // Print the seed first: whatever happens next, the run can be replayed.
  std::printf("seed %llu\n", static_cast<unsigned long long>(cfg.seed));
  std::fflush(stdout);
  RunOutcome r = run_workload(cfg);
  if (r.result.exit_code == 2) usage_error(r.result.error);
  std::fputs(format_summary(r).c_str(), stdout);
  if (!g_json.empty()) {
    std::ofstream f(g_json);
    if (!f) usage_error("cannot write '" + g_json + "'");
    f << summary_json(r).dump(2) << "\n";
  }
  return r.result.exit_code;
}

}  // namespace

Command add_run(CLI::App& app) {
  WorkloadConfig& cfg = g_cfg;
  auto* run_cmd = app.add_subcommand("run", "run a workload with every invariant checked after every operation");
  run_cmd->add_option("--workload", cfg.name, workloads_help())->capture_default_str();
  run_cmd->add_option("--seed", cfg.seed, "random seed (printed first; replays the run)")->capture_default_str();
  run_cmd->add_option("--design", cfg.design, designs_help())->capture_default_str();
  run_cmd->add_option("--gib", cfg.gib, "guest RAM of the TD in GiB (fractions allowed)")->capture_default_str();
  run_cmd->add_option("--vcpus", cfg.vcpus, "number of vCPUs")->check(CLI::Range(1, 64))->capture_default_str();
  run_cmd->add_option("--ept-levels", cfg.ept_levels, "EPT/S-EPT levels (4 or 5)")
      ->check(CLI::IsMember({4, 5}))
      ->capture_default_str();
  run_cmd->add_option("--resched-interval", cfg.resched_interval,
                      "force a yield every N iterator steps in long walks (0: only on contention)");
  run_cmd->add_flag("!--no-check", cfg.check, "skip the invariant checks (for timing)");
  run_cmd->add_flag("!--inline", cfg.threads,
                    "run every operation on this thread, one after another (exactly replayable); by default "
                    "vCPUs run on their own threads (native engine)");
  run_cmd->add_option("--json", g_json, "also write the summary as JSON to FILE");
  return {run_cmd, &run};
}

}  // namespace mirrormmu::cli
