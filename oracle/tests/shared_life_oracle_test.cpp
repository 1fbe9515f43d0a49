// SPDX-License-Identifier: GPL-2.0-only
// shared-life on the kernel's own MMU and on the model configured as the
// tree (6.12: no early SPURIOUS): run in turn, both must be clean and agree
// on every count, transition class by transition class. The kernel's
// numbers come from its own tracepoint and flush calls.
#include <gtest/gtest.h>

#include "oracle/kernel_backend.h"
#include "oracle/kernel_mmu.h"
#include "vm/plain_vm.h"
#include "workload/shared_life.h"

namespace mirrormmu::oracle {
namespace {

std::unique_ptr<DirectMmu> kernel_mmu(int vcpus) {
  register_kernel_mmu();
  auto f = find_direct_mmu("kernel");
  EXPECT_NE(f, nullptr);
  return f(vcpus);
}

struct Case {
  uint64_t seed;
  int vcpus;
  bool huge;
  int iterations;
};

TEST(SharedLifeOracle, TheModelAndTheKernelAgreeOnEveryCount) {
  const bool tree_612 = KernelMmu::tree_version().rfind("6.12.", 0) == 0;
  for (const Case& k : {Case{1, 2, false, 3}, Case{5, 3, true, 2}, Case{9, 1, true, 4}, Case{11, 4, false, 1}}) {
    SharedLifeConfig c;
    c.seed = k.seed;
    c.gib = 0.05;
    c.vcpus = k.vcpus;
    c.huge_pages = k.huge;
    c.iterations = k.iterations;
    c.threads = false;
    PlainVm model(PlainVmConfig{k.vcpus, !tree_612});
    const SharedLifeResult m = run_shared_life(model, c);
    auto kernel = kernel_mmu(k.vcpus);
    const SharedLifeResult r = run_shared_life(*kernel, c);
    const std::string what = "seed " + std::to_string(k.seed) + (k.huge ? " huge" : "");
    EXPECT_EQ(m.failure, "") << what;
    EXPECT_EQ(r.failure, "") << what;
    EXPECT_EQ(m.faults, r.faults) << what;
    EXPECT_EQ(m.spurious, r.spurious) << what;
    EXPECT_EQ(m.dirty_pages, r.dirty_pages) << what;
    EXPECT_EQ(model.stats().flushes.load(), kernel->stats().flushes.load()) << what;
    for (size_t i = 0; i < TransitionCounts::kClasses; i++)
      EXPECT_EQ(model.stats().transitions.count(i), kernel->stats().transitions.count(i))
          << what << ": " << TransitionCounts::at(i).name();
  }
}

TEST(SharedLifeOracle, TheKernelRunsCleanWithVcpuThreads) {
  SharedLifeConfig c;
  c.gib = 0.05;
  c.vcpus = 4;
  c.huge_pages = true;
  c.threads = true;
  auto kernel = kernel_mmu(c.vcpus);
  const SharedLifeResult r = run_shared_life(*kernel, c);
  EXPECT_EQ(r.failure, "");
  EXPECT_EQ(r.leaked_tables, 0);
  EXPECT_GT(kernel->stats().transitions.total(), 0u);
}

}  // namespace
}  // namespace mirrormmu::oracle
