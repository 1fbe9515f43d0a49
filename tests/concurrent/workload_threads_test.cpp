// SPDX-License-Identifier: MIT
// Workloads on vCPU threads with incremental checking (the default): the
// ranges the vCPUs' faults record, the checks taken while they run and the
// selftests' concurrent conversions, under ThreadSanitizer in make test.
#include <gtest/gtest.h>

#include "workload/runner.h"

namespace mirrormmu::test {
namespace {

void expect_clean(const WorkloadConfig& wc) {
  RunOutcome out = run_workload(wc);
  ASSERT_EQ(out.result.exit_code, 0) << wc.name << ": " << out.result.error
                                     << (out.checker ? out.checker->describe() : "");
}

TEST(WorkloadThreads, TdLifeWithIncrementalChecksWhileVcpusRun) {
  WorkloadConfig wc;
  wc.gib = 0.05;
  wc.vcpus = 3;
  ASSERT_EQ(wc.check_mode, CheckMode::Incremental);
  RunOutcome out = run_workload(wc);
  ASSERT_EQ(out.result.exit_code, 0) << out.result.error << (out.checker ? out.checker->describe() : "");
  EXPECT_GE(out.checker->full_checks(), 1u);
}

TEST(WorkloadThreads, PrivateMemConversionsFromThreeVcpuThreads) {
  WorkloadConfig wc;
  wc.name = "private-mem-conversions";
  wc.vcpus = 3;
  wc.st.slots = 3;
  expect_clean(wc);
}

TEST(WorkloadThreads, DirtyLogPerfKeepsWritingWhileLoggingIsDisabled) {
  WorkloadConfig wc;
  wc.name = "dirty-log-perf";
  wc.vcpus = 2;
  wc.st.bytes_per_vcpu = 2ull << 20;
  wc.st.keep_running = true;
  expect_clean(wc);
}

// The mprotects' invalidations of every alias race the vCPUs' faults and
// the checks taken while they run.
TEST(WorkloadThreads, MmuStressMprotectsUnderTwoVcpuThreads) {
  WorkloadConfig wc;
  wc.name = "mmu-stress";
  wc.vcpus = 2;
  wc.st.max_mem = 16ull << 20;
  wc.st.slot_size = 4ull << 20;
  expect_clean(wc);
}

// The memslot's deletion races the prefault (and its -EAGAIN).
TEST(WorkloadThreads, PreFaultMemoryAgainstTheMemslotsDeletion) {
  WorkloadConfig wc;
  wc.name = "pre-fault-memory";
  wc.vcpus = 1;
  expect_clean(wc);
}

}  // namespace
}  // namespace mirrormmu::test
