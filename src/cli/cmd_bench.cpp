// SPDX-License-Identifier: MIT
// mirrormmu bench: the headline figures in one table, each also as a ratio
// to the floor measured in the same run.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/common.h"
#include "workload/bench_kernels.h"

namespace mirrormmu::cli {

namespace {

uint64_t g_pages = 1u << 16;
int g_threads = 2;
int g_repeat = 3;

// Best of `n` runs: the least disturbed by whatever else the machine does.
template <class F>
double best(F&& f) {
  double b = 1e300;
  for (int i = 0; i < g_repeat; i++) b = std::min(b, f());
  return b;
}

int run() {
  using namespace mirrormmu::bench;
  const uint64_t pages = g_pages;
  const double floor = best([&] { return floor_cmpxchg_ns(pages); });
  struct Row {
    std::string name, unit;
    double ns;
  };
  std::vector<Row> rows;
  rows.push_back({"floor: one cmpxchg per SPTE", "SPTE", floor});
  const double direct1 = best([&] { return populate_direct_ns(pages, 1); });
  rows.push_back({"populate 4K, direct root, 1 thread", "page", direct1});
  const double directn = best([&] { return populate_direct_ns(pages, g_threads); });
  rows.push_back({fmt::format("populate 4K, direct root, {} threads", g_threads), "page", directn});
  const double mirror1 = best([&] { return populate_mirror_ns(pages, 1); });
  rows.push_back({"populate 4K, mirror + TDX (AUG), 1 thread", "page", mirror1});
  const double mirrorn = best([&] { return populate_mirror_ns(pages, g_threads); });
  rows.push_back({fmt::format("populate 4K, mirror + TDX (AUG), {} threads", g_threads), "page", mirrorn});
  const double mirror2m = best([&] { return populate_mirror_2m_ns(pages); });
  rows.push_back({"populate 2M, mirror + TDX (2M AUG), 1 thread", "page", mirror2m});
  rows.push_back({"demote 2M -> 4K (BLOCK/TRACK/DEMOTE, exclusive)", "2M page", best([&] { return demote_2m_ns(pages); })});
  rows.push_back({"teardown zap, direct root", "page", best([&] { return zap_direct_ns(pages); })});
  rows.push_back({"teardown zap, mirror + TDX (BLOCK/TRACK/REMOVE)", "page", best([&] { return zap_mirror_ns(pages); })});
  const double exec = best([&] { return explorer_exec_ns(200); });
  rows.push_back({"explorer: two-vCPU fault race (DFS)", "execution", exec});
  const double sp = best([&] { return sched_point_off_ns(10'000'000); });
  rows.push_back({"scheduling point, engine off", "call", sp});
  const double per_fault = sched_points_per_direct_fault();

  std::printf("%-50s %12s  %-9s %10s\n", "benchmark", "ns", "per", "x floor");
  for (const auto& r : rows) std::printf("%-50s %12.1f  %-9s %10.1f\n", r.name.c_str(), r.ns, r.unit.c_str(), r.ns / floor);
  std::printf("\n");
  std::printf("pages per run: %llu; best of %d runs; %d threads\n", static_cast<unsigned long long>(pages), g_repeat,
              g_threads);
  std::printf("mirror / direct (1 thread):        %.2fx   (target <= 2.5x)\n", mirror1 / direct1);
  std::printf("direct populate / floor:           %.1fx   (target <= 3x)\n", direct1 / floor);
  std::printf("mirror 4K / mirror 2M per page:    %.1fx\n", mirror1 / mirror2m);
  std::printf("%d threads vs 1 (direct):           %.2fx faster (target >= 1.7x)\n", g_threads, direct1 / directn);
  std::printf("%d threads vs 1 (mirror):           %.2fx faster\n", g_threads, mirror1 / mirrorn);
  std::printf("explorer:                          %.0f executions/s (target >= 100000 per core)\n", 1e9 / exec);
  std::printf("engine off: %.1f scheduling points per direct fault x %.2f ns = %.1f ns, %.2f%% of a fault\n", per_fault,
              sp, per_fault * sp, 100.0 * per_fault * sp / direct1);
  return 0;
}

}  // namespace

Command add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "measure populate, zap, threads and the explorer against the cmpxchg floor");
  cmd->add_option("--pages", g_pages, "pages per populate/zap run")->check(CLI::Range(uint64_t(1024), uint64_t(1) << 22))
      ->capture_default_str();
  cmd->add_option("--threads", g_threads, "threads for the scaling rows")->check(CLI::Range(2, 64))->capture_default_str();
  cmd->add_option("--repeat", g_repeat, "runs per figure (best is kept)")->check(CLI::Range(1, 100))->capture_default_str();
  return {cmd, &run};
}

}  // namespace mirrormmu::cli
