// SPDX-License-Identifier: MIT
// mirrormmu run
#include <fmt/format.h>

#include <cstdio>
#include <fstream>

#include "cli/common.h"
#include "mmu/design.h"
#include "report/shared_summary.h"
#include "report/plot.h"
#include "report/summary.h"
#include "vm/direct_mmu.h"
#include "workload/runner.h"
#include "workload/shared_life.h"

namespace mirrormmu::cli {

namespace {

WorkloadConfig g_cfg;
std::string g_json;
std::string g_mmu = "model";
int g_iterations = 3;
CLI::App* g_cmd = nullptr;

std::string g_plot_dir;

void check_json_path() {
  check_output_path("--json", g_json);
  check_output_path("--trace", g_cfg.trace_path);
  check_output_dir("--plot", g_plot_dir);
}

// A plain VM's shared memory on the model or on the kernel's own MMU.
int run_shared() {
  const WorkloadConfig& c = g_cfg;
  const SharedLifeConfig sc = shared_life_options(g_cmd, c, g_iterations, {g_mmu}, "shared-life");
  check_json_path();
  std::printf("seed %llu\n", static_cast<unsigned long long>(c.seed));
  std::fflush(stdout);
  std::unique_ptr<DirectMmu> mmu = find_direct_mmu(g_mmu)(c.vcpus);
  const SharedLifeResult r = run_shared_life(*mmu, sc);
  std::fputs(format_shared_summary(sc, r, *mmu).c_str(), stdout);
  if (!g_json.empty()) {
    std::ofstream f(g_json);
    f << shared_summary_json(sc, r, *mmu).dump(2) << "\n";
  }
  return r.exit_code;
}

int run() {
  WorkloadConfig& cfg = g_cfg;
  apply_selftest_command(g_cmd, cfg);
  cfg.print_figures = true;
  if (g_cfg.name == "shared-life") return run_shared();
  if (g_mmu != "model")
    usage_error("--mmu " + g_mmu + " runs the shared-memory workload only (--workload shared-life): the tree has no "
                "mirror roots for a TD's private memory");
  if (!find_design(cfg.design)) usage_error("unknown design '" + cfg.design + "' (valid: " + design_names() + ")");
  validate_workload_options(cfg);
  check_json_path();
  // A run its workload refuses is bad input: said before anything else.
  if (std::string why = workload_refusal(cfg); !why.empty()) usage_error(why);
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
  if (!g_plot_dir.empty()) {
    std::string error;
    const auto files = draw_charts(g_plot_dir, r.result.charts, &error);
    if (!error.empty()) usage_error("--plot: " + error);
    std::printf("plots: %zu files in %s\n", files.size(), g_plot_dir.c_str());
  }
  return r.result.exit_code;
}

}  // namespace

Command add_run(CLI::App& app) {
  WorkloadConfig& cfg = g_cfg;
  auto* run_cmd = app.add_subcommand("run", "run a workload with every invariant checked after every operation");
  g_cmd = run_cmd;
  add_workload_options(run_cmd, cfg);
  add_selftest_commands(run_cmd, cfg);
  run_cmd->add_option("--design", cfg.design, designs_help())->capture_default_str();
  run_cmd->add_option("--json", g_json, "also write the summary as JSON to FILE");
  run_cmd->add_option("--plot", g_plot_dir,
                      "draw the run's charts (per-operation times; the selftests' per-iteration and per-vCPU "
                      "figures) into the directory DIR as PNG and SVG, with gnuplot");
  run_cmd->add_option("--trace", cfg.trace_path,
                      "write every SPTE change, fault request and mapping, SEAMCALL (leaf, GPA, level, status), "
                      "external hook, TLB flush and bug site to FILE, one line each in trace-cmd's report layout "
                      "(kvm_tdp_mmu_spte_changed, kvm_mmu_spte_requested, kvm_mmu_set_spte, tdx_seamcall, "
                      "kvm_bug_site, ...)");
  run_cmd->add_option("--mmu", g_mmu,
                      "whose TDP MMU runs shared-life: 'model' (ours) or 'kernel' (the kernel tree's own "
                      "tdp_mmu.c, in a binary built by `make oracle`; the direct root of a plain VM: the tree's "
                      "code for the MMU, our glue for memslots, faults and the dirty log)")
      ->capture_default_str();
  run_cmd->add_option("--iterations", g_iterations, "shared-life: dirty-logging rounds (dirty_log_perf_test -i)")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  return {run_cmd, &run};
}

}  // namespace mirrormmu::cli
