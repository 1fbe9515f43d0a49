// mirrormmu: the command line.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "mmu/design.h"
#include "report/summary.h"
#include "workload/runner.h"

namespace {

using namespace mirrormmu;

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

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "mirrormmu: error: %s\n", msg.c_str());
  std::exit(2);
}

int cmd_run(const WorkloadConfig& cfg, const std::string& json_path) {
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
  if (!json_path.empty()) {
    std::ofstream f(json_path);
    if (!f) usage_error("cannot write '" + json_path + "'");
    f << summary_json(r).dump(2) << "\n";
  }
  return r.result.exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mirrormmu: KVM's TDP MMU with TDX mirror page tables, a TDX module model and a checker"};
  app.require_subcommand(1);

  WorkloadConfig cfg;
  std::string json_path;
  auto* run = app.add_subcommand("run", "run a workload with every invariant checked after every operation");
  run->add_option("--workload", cfg.name, workloads_help())->capture_default_str();
  run->add_option("--seed", cfg.seed, "random seed (printed first; replays the run)")->capture_default_str();
  run->add_option("--design", cfg.design, designs_help())->capture_default_str();
  run->add_option("--gib", cfg.gib, "guest RAM of the TD in GiB (fractions allowed)")->capture_default_str();
  run->add_option("--vcpus", cfg.vcpus, "number of vCPUs")->check(CLI::Range(1, 64))->capture_default_str();
  run->add_option("--ept-levels", cfg.ept_levels, "EPT/S-EPT levels (4 or 5)")
      ->check(CLI::IsMember({4, 5}))
      ->capture_default_str();
  run->add_option("--resched-interval", cfg.resched_interval,
                  "force a yield every N iterator steps in long walks (0: only on contention)");
  run->add_flag("!--no-check", cfg.check, "skip the invariant checks (for timing)");
  run->add_option("--json", json_path, "also write the summary as JSON to FILE");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    usage_error(msg.empty() ? "bad usage (see --help)" : msg);
  }
  if (run->parsed()) return cmd_run(cfg, json_path);
  return 2;
}
