// SPDX-License-Identifier: MIT
// mirrormmu compare [selftest [its flags]] --designs A,B[,C] [workload options]
#include <fmt/format.h>

#include <cstdio>
#include <fstream>

#include "cli/common.h"
#include "mmu/design.h"
#include "report/compare.h"
#include "report/shared_summary.h"
#include "report/summary.h"
#include "vm/direct_mmu.h"
#include "workload/runner.h"
#include "workload/shared_life.h"

namespace mirrormmu::cli {

namespace {

WorkloadConfig g_cfg;
std::vector<std::string> g_designs;
std::string g_json;
bool g_full = false;
std::vector<std::string> g_mmus;
int g_iterations = 3;
CLI::App* g_cmd = nullptr;

// compare --mmu A,B: shared-life on each MMU, in turn, the same seed.
int run_mmus() {
  if (!g_designs.empty()) usage_error("--designs and --mmu compare different things; give one");
  if (g_mmus.size() < 2) usage_error("--mmu needs at least two MMUs, e.g. model-6.12,kernel");
  if (g_cfg.name != "td-life" && g_cfg.name != "shared-life")
    usage_error("--mmu compares the shared-memory workload (shared-life) only");
  if (auto* o = g_cmd->get_option_no_throw("--threads"); o && o->count())
    usage_error("--threads has no meaning for compare --mmu: the columns compare only when every MMU runs in turn");
  WorkloadConfig c = g_cfg;
  c.threads = false;  // columns compare only when every MMU sees the same order
  const SharedLifeConfig sc = shared_life_options(g_cmd, c, g_iterations, g_mmus, "compare --mmu");
  std::printf("seed %llu\n", static_cast<unsigned long long>(sc.seed));
  std::vector<std::unique_ptr<DirectMmu>> mmus;
  std::vector<SharedColumn> cols;
  int rc = 0;
  for (const auto& m : g_mmus) {
    // One oracle VM at a time: each is destroyed by its run before the next.
    mmus.push_back(find_direct_mmu(m)(sc.vcpus));
    cols.push_back({run_shared_life(*mmus.back(), sc), mmus.back().get()});
    rc |= cols.back().result.exit_code;
  }
  std::fputs(format_shared_compare(sc, cols).c_str(), stdout);
  return rc;
}

int run() {
  apply_selftest_command(g_cmd, g_cfg);
  if (!g_mmus.empty()) return run_mmus();
  validate_workload_options(g_cfg);
  if (g_designs.empty()) usage_error("give --designs A,B (hook designs on a TD workload) or --mmu A,B (MMUs on shared-life)");
  if (g_designs.size() < 2) usage_error("--designs needs at least two designs, e.g. upstream,hugepage-v5");
  for (const auto& d : g_designs)
    if (!find_design(d)) usage_error("unknown design '" + d + "' (valid: " + design_names() + ")");
  std::printf("seed %llu\n", static_cast<unsigned long long>(g_cfg.seed));
  std::fflush(stdout);

  std::vector<CompareColumn> cols;
  int rc = 0;
  for (const auto& d : g_designs) {
    WorkloadConfig c = g_cfg;
    c.design = d;
    RunOutcome r = run_workload(c);
    CompareColumn col{d, "", nlohmann::json::object()};
    if (r.result.exit_code == 2) {
      // A design that cannot do what the workload asks is a finding, not a
      // usage error: the other columns still run.
      col.refused = r.result.error;
    } else {
      col.summary = summary_json(r);
      if (r.result.exit_code) rc = 1;
      if (g_full) std::fputs(format_summary(r).c_str(), stdout);
    }
    cols.push_back(std::move(col));
  }
  if (!g_json.empty()) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& c : cols) j[c.design] = c.refused.empty() ? c.summary : nlohmann::json{{"refused", c.refused}};
    std::ofstream f(g_json);
    if (!f) usage_error("cannot write '" + g_json + "'");
    f << j.dump(2) << "\n";
  }
  std::fputs(fmt::format("\n{} GiB, {} vCPUs, workload {}, seed {}, {}, {}\n", g_cfg.gib, g_cfg.vcpus, g_cfg.name,
                         g_cfg.seed, g_cfg.huge_pages ? "private huge pages" : "4K private pages",
                         g_cfg.threads ? "vCPU threads" : "one thread")
                 .c_str(),
             stdout);
  std::fputs(format_compare(cols).c_str(), stdout);
  return rc;
}

}  // namespace

Command add_compare(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "compare", "run the same workload and seed under several hook designs and print them side by side");
  g_cmd = cmd;
  cmd->add_option("--designs", g_designs, "comma-separated designs to compare (see `run --help` for the list)")
      ->delimiter(',');
  cmd->add_option("--mmu", g_mmus,
                  "comma-separated MMUs to run shared-life on instead, e.g. model-6.12,kernel: 'model' (ours, "
                  "upstream), 'model-6.12' (ours as 6.12 behaves), 'kernel' (the tree's own tdp_mmu.c, in a binary "
                  "built by `make oracle`)")
      ->delimiter(',');
  cmd->add_option("--iterations", g_iterations, "with --mmu: shared-life's dirty-logging rounds")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  add_workload_options(cmd, g_cfg);
  add_selftest_commands(cmd, g_cfg);
  // Columns are only comparable when every design sees the same
  // interleaving: one thread by default, vCPU threads on request.
  g_cfg.threads = false;
  cmd->add_flag("--threads", g_cfg.threads, "run vCPUs on their own threads (counts then vary from run to run)");
  cmd->add_flag("--full", g_full, "also print each design's full run summary");
  cmd->add_option("--json", g_json, "also write every design's summary as JSON to FILE");
  return {cmd, &run};
}

}  // namespace mirrormmu::cli
