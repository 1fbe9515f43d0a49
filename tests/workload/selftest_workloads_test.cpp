// SPDX-License-Identifier: MIT
// The workloads modelled on the KVM selftests run clean on every design,
// on vCPU threads and inline, print the figures their selftest prints, and
// fail where the mechanism they exercise is broken.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "mmu/design.h"
#include "workload/runner.h"

namespace mirrormmu::test {
namespace {

WorkloadConfig selftest(const std::string& name) {
  WorkloadConfig wc;
  wc.name = name;
  wc.vcpus = 2;
  wc.st.bytes_per_vcpu = 4ull << 20;
  wc.st.iterations = 2;
  return wc;
}

size_t count_prefix(const std::vector<std::string>& lines, const std::string& prefix) {
  return size_t(std::count_if(lines.begin(), lines.end(), [&](const std::string& l) { return l.rfind(prefix, 0) == 0; }));
}

TEST(SelftestWorkloads, EachRunsCleanOnEveryDesignOnThreadsAndInline) {
  for (const char* name : {"demand-paging", "dirty-log-perf", "private-mem-conversions"})
    for (const DesignInfo& d : designs())
      for (bool threads : {true, false}) {
        WorkloadConfig wc = selftest(name);
        wc.design = d.name;
        wc.threads = threads;
        RunOutcome out = run_workload(wc);
        const std::string what = std::string(name) + " on " + d.name + (threads ? " (threads)" : " (inline)");
        ASSERT_EQ(out.result.exit_code, 0) << what << ": " << out.result.error
                                           << (out.checker ? out.checker->describe() : "");
        EXPECT_FALSE(out.result.figures.empty()) << what;
      }
}

TEST(SelftestWorkloads, DemandPagingPrintsTheSelftestsFigures) {
  RunOutcome out = run_workload(selftest("demand-paging"));
  ASSERT_EQ(out.result.exit_code, 0) << out.result.error;
  const auto& f = out.result.figures;
  for (const char* line : {"Testing guest mode: ", "guest physical test memory: [", "Total guest execution time:\t",
                           "Per-vcpu demand paging rate:\t", "Overall demand paging rate:\t"})
    EXPECT_EQ(count_prefix(f, line), 1u) << line;
  // Every page of the test memory was faulted in and is mapped private.
  EXPECT_EQ(out.vm->module()->stats(tdx::Leaf::MEM_PAGE_AUG).calls, 2 * (4ull << 20) / kPageSize);
}

TEST(SelftestWorkloads, DirtyLogPerfPrintsAFigurePerIterationAndStep) {
  for (bool manual : {true, false}) {
    WorkloadConfig wc = selftest("dirty-log-perf");
    wc.st.iterations = 3;
    wc.st.manual_protect = manual;
    wc.st.slots = 2;
    RunOutcome out = run_workload(wc);
    ASSERT_EQ(out.result.exit_code, 0) << out.result.error;
    const auto& f = out.result.figures;
    EXPECT_EQ(count_prefix(f, "Populate memory time: "), 1u);
    EXPECT_EQ(count_prefix(f, "Iteration "), manual ? 9u : 6u);
    EXPECT_EQ(count_prefix(f, "Clear dirty log over 3 iterations took "), manual ? 1u : 0u);
    EXPECT_EQ(count_prefix(f, "Get dirty log over 3 iterations took "), 1u);
  }
}

// A clear that leaves the pages writable loses every write after it: the
// page-by-page comparison of the bitmap with what the vCPUs wrote finds it
// in the iteration after the first clear.
TEST(SelftestWorkloads, DirtyLogPerfFindsALostDirtyBit) {
  WorkloadConfig wc = selftest("dirty-log-perf");
  wc.what_if.no_wrprot_on_clear = true;
  wc.threads = false;
  RunOutcome out = run_workload(wc);
  ASSERT_TRUE(out.checker);
  ASSERT_FALSE(out.checker->ok());
  EXPECT_EQ(out.checker->violations().front().invariant, "dirty_log");
  EXPECT_NE(out.checker->violations().front().op.find("iteration 2"), std::string::npos)
      << out.checker->violations().front().op;
}

TEST(SelftestWorkloads, PrivateMemConversionsConvertsEverySubRangeBothWays) {
  WorkloadConfig wc = selftest("private-mem-conversions");
  wc.st.slots = 2;
  RunOutcome out = run_workload(wc);
  ASSERT_EQ(out.result.exit_code, 0) << out.result.error;
  // Both sides of each vCPU's area were mapped: private leaves were
  // installed (AUG) and removed again, and shared leaves too.
  const tdx::TdxModule& m = *out.vm->module();
  EXPECT_GT(m.stats(tdx::Leaf::MEM_PAGE_AUG).calls, 2u * 5);
  EXPECT_GT(m.stats(tdx::Leaf::MEM_PAGE_REMOVE).calls, 2u * 5);
  EXPECT_GT(out.vm->op_stats().conversions, 2u * 20);
}

TEST(SelftestWorkloads, ConfigsTheSelftestWouldRefuseAreRefused) {
  WorkloadConfig wc = selftest("dirty-log-perf");
  wc.st.iterations = 1;
  EXPECT_EQ(run_workload(wc).result.exit_code, 2);
  wc = selftest("dirty-log-perf");
  wc.st.slots = 3;  // 2048 pages do not split three ways
  EXPECT_EQ(run_workload(wc).result.exit_code, 2);
  wc = selftest("demand-paging");
  wc.st.bytes_per_vcpu = 4096 + 512;
  EXPECT_EQ(run_workload(wc).result.exit_code, 2);
  wc = selftest("demand-paging");
  wc.st.backing = "anonymous_hugetlb_1gb";
  EXPECT_EQ(run_workload(wc).result.exit_code, 2);
  wc = selftest("private-mem-conversions");
  wc.st.slots = 3;
  EXPECT_EQ(run_workload(wc).result.exit_code, 2);
}

}  // namespace
}  // namespace mirrormmu::test
