// SPDX-License-Identifier: MIT
// mirrormmu run
#include <fmt/format.h>

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

int run() {
  const WorkloadConfig& cfg = g_cfg;
  if (!find_design(cfg.design)) usage_error("unknown design '" + cfg.design + "' (valid: " + design_names() + ")");
  validate_workload_options(cfg);
  // Print the seed first: whatever happens next, the run can be replayed.
  std::printf("seed %llu\n", static_cast<unsigned long long>(cfg.seed));
  std::fflush(stdout);
  RunOutcome r = run_workload(cfg);
  if (r.result.exit_code == 2 && !r.vm) usage_error(r.result.error);
  std::fputs(format_summary(r).c_str(), stdout);
  if (r.result.exit_code == 2) usage_error(r.result.error);
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
  add_workload_options(run_cmd, cfg);
  run_cmd->add_option("--design", cfg.design, designs_help())->capture_default_str();
  run_cmd->add_option("--json", g_json, "also write the summary as JSON to FILE");
  return {run_cmd, &run};
}

}  // namespace mirrormmu::cli
