// SPDX-License-Identifier: MIT
// mmu-stress and pre-fault-memory: clean on every design, on vCPU threads
// and inline, with the selftests' lines; the bug each one's mechanism is
// known for is found by the run, not only by a unit test.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "mmu/design.h"
#include "workload/runner.h"

namespace mirrormmu::test {
namespace {

WorkloadConfig stress() {
  WorkloadConfig wc;
  wc.name = "mmu-stress";
  wc.vcpus = 2;
  wc.st.max_mem = 32ull << 20;  // four 8M slots over one memfd
  wc.st.slot_size = 8ull << 20;
  return wc;
}

WorkloadConfig prefault() {
  WorkloadConfig wc;
  wc.name = "pre-fault-memory";
  wc.vcpus = 1;
  return wc;
}

bool has_line(const std::vector<std::string>& lines, const std::string& prefix) {
  return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) { return l.rfind(prefix, 0) == 0; });
}

TEST(StressPrefault, EachRunsCleanOnEveryDesignOnThreadsAndInline) {
  for (const WorkloadConfig& base : {stress(), prefault()})
    for (const DesignInfo& d : designs())
      for (bool threads : {true, false}) {
        WorkloadConfig wc = base;
        wc.design = d.name;
        wc.threads = threads;
        RunOutcome out = run_workload(wc);
        const std::string what = wc.name + " on " + d.name + (threads ? " (threads)" : " (inline)");
        ASSERT_EQ(out.result.exit_code, 0) << what << ": " << out.result.error
                                           << (out.checker ? out.checker->describe() : "");
      }
}

TEST(StressPrefault, MmuStressAliasesOneMemfdAndPrintsItsStages) {
  WorkloadConfig wc = stress();
  wc.threads = false;
  RunOutcome out = run_workload(wc);
  ASSERT_EQ(out.result.exit_code, 0) << out.result.error;
  const auto& f = out.result.figures;
  EXPECT_TRUE(has_line(f, "Running with 0gb of guest memory and 2 vCPUs"));
  for (const char* stage : {"spawning", "run 1", "reset", "run 2", "mprotect RO", "mprotect RW"})
    EXPECT_TRUE(has_line(f, std::string("All vCPUs finished ") + stage + ", releasing...")) << stage;
  EXPECT_TRUE(has_line(f, "run1 = ")) << "the summary line";
  // All 32M of guest memory came out of the one 8M memfd.
  EXPECT_EQ(out.vm->pool().flow(PageOwner::GuestShared).allocated, (8ull << 20) / kPageSize);
}

// Both halves of the check: the guest's write to read-only memory that
// succeeds, and the writable leaf the checker finds over it.
TEST(StressPrefault, MmuStressFindsANotifierThatMissesAliases) {
  for (bool threads : {false, true}) {
    WorkloadConfig wc = stress();
    wc.threads = threads;
    wc.what_if.notifier_first_slot_only = true;
    RunOutcome out = run_workload(wc);
    ASSERT_TRUE(out.checker);
    ASSERT_FALSE(out.checker->ok()) << (threads ? "threads" : "inline");
    EXPECT_EQ(out.checker->violations().front().invariant, "host_prot");
    EXPECT_EQ(out.result.exit_code, 1);
  }
}

TEST(StressPrefault, PreFaultMemoryRunsEveryCaseOnBothSides) {
  WorkloadConfig wc = prefault();
  wc.threads = false;
  RunOutcome out = run_workload(wc);
  ASSERT_EQ(out.result.exit_code, 0) << out.result.error;
  // The selftest prints no header: no guest modes, no backing flag.
  for (const std::string& line : out.result.figures) EXPECT_NE(line.rfind("Testing ", 0), 0u) << line;
  // The private pass AUGed the 513 pages, and again after recreations of
  // the slot; every page AUGed or ADDed (the image) was removed in the end.
  const tdx::TdxModule& m = *out.vm->module();
  EXPECT_GE(m.stats(tdx::Leaf::MEM_PAGE_AUG).calls, 513u * 2);
  EXPECT_EQ(m.stats(tdx::Leaf::MEM_PAGE_AUG).calls + m.stats(tdx::Leaf::MEM_PAGE_ADD).calls,
            m.stats(tdx::Leaf::MEM_PAGE_REMOVE).calls);
}

TEST(StressPrefault, PreFaultMemoryFindsProgressPastWhatWasMapped) {
  WorkloadConfig wc = prefault();
  wc.what_if.prefault_progress_max_level = true;
  RunOutcome out = run_workload(wc);
  ASSERT_TRUE(out.checker);
  ASSERT_FALSE(out.checker->ok());
  const Violation& v = out.checker->violations().front();
  EXPECT_EQ(v.invariant, "prefault_unmapped");
  EXPECT_EQ(v.op, "KVM_PRE_FAULT_MEMORY shared [0x0, +0x200000)");
}

TEST(StressPrefault, ConfigsTheSelftestWouldRefuseAreRefused) {
  WorkloadConfig wc = stress();
  wc.st.slot_size = 3ull << 20;
  wc.st.hugetlb = true;  // not a whole number of 2M pages
  EXPECT_EQ(run_workload(wc).result.exit_code, 2);
  wc = stress();
  wc.st.max_mem = 0;
  EXPECT_EQ(run_workload(wc).result.exit_code, 2);
  wc = prefault();
  wc.st.backing = "anonymous_hugetlb";  // 2M without --huge-pages
  EXPECT_EQ(run_workload(wc).result.exit_code, 2);
}

}  // namespace
}  // namespace mirrormmu::test
