// SPDX-License-Identifier: MIT
// --trace FILE: the events in the file are the events of the run. Each
// SEAMCALL the module counted is a tdx_seamcall line, each mapping the fault
// path installed is a kvm_mmu_set_spte line right after the SPTE change
// that made it, and a traced run is checked as an untraced one is.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <unistd.h>

#include "workload/runner.h"

namespace mirrormmu::test {
namespace {

std::string temp_path(const char* name) { return std::string("/tmp/mirrormmu-") + std::to_string(::getpid()) + name; }

TEST(Trace, EveryEventOfTheRunIsALineInTraceCmdLayout) {
  WorkloadConfig wc;
  wc.gib = 0.02;
  wc.threads = false;
  wc.trace_path = temp_path("-trace.txt");
  RunOutcome out = run_workload(wc);
  ASSERT_EQ(out.result.exit_code, 0) << out.result.error;
  std::ifstream f(wc.trace_path);
  ASSERT_TRUE(f);
  std::map<std::string, uint64_t> per_event;
  uint64_t lines = 0, set_spte_after_change = 0;
  std::string line, prev_event, prev_gfn;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    lines++;
    // "  TASK-PID [CPU] TIMESTAMP: EVENT: FIELDS"
    const size_t cpu = line.find(" ["), colon = line.find(": ");
    ASSERT_NE(cpu, std::string::npos) << line;
    ASSERT_NE(colon, std::string::npos) << line;
    const size_t colon2 = line.find(": ", colon + 2);
    ASSERT_NE(colon2, std::string::npos) << line;
    const std::string event = line.substr(colon + 2, colon2 - colon - 2);
    const std::string fields = line.substr(colon2 + 2);
    per_event[event]++;
    const size_t g = fields.find("gfn ");
    const std::string gfn = g == std::string::npos ? "" : fields.substr(g, fields.find(' ', g + 4) - g);
    if (event == "kvm_mmu_set_spte" && prev_event == "kvm_tdp_mmu_spte_changed" && gfn == prev_gfn)
      set_spte_after_change++;
    prev_event = event;
    prev_gfn = gfn;
  }
  std::remove(wc.trace_path.c_str());
  EXPECT_EQ(lines, out.result.trace_events);
  uint64_t seamcalls = 0;
  for (size_t l = 0; l < tdx::kLeafCount; l++) seamcalls += out.vm->module()->stats(static_cast<tdx::Leaf>(l)).calls;
  EXPECT_EQ(per_event["tdx_seamcall"], seamcalls);
  EXPECT_GT(per_event["kvm_mmu_spte_requested"], 0u);
  EXPECT_GT(per_event["kvm_mmu_set_spte"], 0u);
  EXPECT_EQ(set_spte_after_change, per_event["kvm_mmu_set_spte"]);
  EXPECT_EQ(per_event["kvm_tdp_mmu_spte_changed"], out.checker->transitions().total());
  EXPECT_EQ(per_event["mirrormmu_op"] + 1, out.result.ops);  // teardown is not a Driver op
  EXPECT_TRUE(out.checker->ok()) << out.checker->describe();
}

TEST(Trace, BugSitesAreInTheTrace) {
  WorkloadConfig wc;
  wc.gib = 0.05;
  wc.threads = false;
  wc.what_if.no_kick_after_track = true;
  wc.trace_path = temp_path("-bug-trace.txt");
  RunOutcome out = run_workload(wc);
  EXPECT_EQ(out.result.exit_code, 1);
  std::ifstream f(wc.trace_path);
  std::string line;
  uint64_t bug_lines = 0;
  while (std::getline(f, line)) bug_lines += line.find(": kvm_bug_site: ") != std::string::npos;
  std::remove(wc.trace_path.c_str());
  EXPECT_EQ(bug_lines, out.vm->bugs().total_hits());
  EXPECT_GT(bug_lines, 0u);
}

}  // namespace
}  // namespace mirrormmu::test
