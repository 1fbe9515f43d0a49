// SPDX-License-Identifier: MIT
// Real threads on the real code: vCPU threads faulting under the shared
// mmu_lock while another thread zaps, converts and checks under the
// exclusive one. Run under ThreadSanitizer by `make test`, and under ASan.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "mmu/designs/designs.h"
#include "vm/plain_vm.h"
#include "workload/runner.h"
#include "workload/shared_life.h"

namespace mirrormmu::test {
namespace {

// A plain VM's shared memory with vCPU threads faulting while the VMM zaps,
// fast-zaps and splits (ThreadSanitizer runs this one too).
TEST(Stress, SharedLifeOnVcpuThreadsIsClean) {
  for (const bool huge : {false, true}) {
    PlainVm vm(PlainVmConfig{4});
    SharedLifeConfig c;
    c.gib = 0.03;
    c.vcpus = 4;
    c.huge_pages = huge;
    c.threads = true;
    const SharedLifeResult r = run_shared_life(vm, c);
    EXPECT_EQ(r.failure, "") << (huge ? "huge" : "4K");
    EXPECT_EQ(r.leaked_tables, 0);
  }
}

TEST(Stress, TdLifeOnVcpuThreadsIsClean) {
  for (uint64_t seed = 1; seed <= 3; seed++) {
    WorkloadConfig c;
    c.seed = seed;
    c.gib = 1.0 / 64;
    c.vcpus = 4;
    c.threads = true;
    RunOutcome r = run_workload(c);
    ASSERT_TRUE(r.checker);
    for (const auto& v : r.checker->violations())
      ADD_FAILURE() << "seed " << seed << ": " << v.invariant << ": " << v.detail << " after " << v.op;
    EXPECT_EQ(r.checker->pages_leaked(), 0u);
    EXPECT_EQ(r.vm->bugs().total_hits(), 0u);
    EXPECT_GT(r.result.concurrent_checks + r.result.ops, 0u);
  }
}

// The same life with private huge pages on vCPU threads, for every design
// that can split them: 2M AUGs, 4K accepts demoting under the exclusive lock
// while other vCPUs fault, conversions cutting 2M mappings; with the TDX-side
// S-EPT pool and Dynamic PAMT on for one of them.
TEST(Stress, TdLifeWithPrivateHugePagesOnVcpuThreadsIsClean) {
  for (const char* design : {"hugepage-v5", "centralized-rfc-fixed", "split-hook", "single-hook"}) {
    WorkloadConfig c;
    c.seed = 5;
    c.gib = 1.0 / 32;
    c.vcpus = 3;
    c.threads = true;
    c.design = design;
    c.huge_pages = true;
    if (std::string(design) == "single-hook") {
      c.external_spt_policy = ExternalSptPolicy::TdxPool;
      c.dynamic_pamt = true;
    }
    RunOutcome r = run_workload(c);
    ASSERT_TRUE(r.checker) << r.result.error;
    for (const auto& v : r.checker->violations())
      ADD_FAILURE() << design << ": " << v.invariant << ": " << v.detail << " after " << v.op;
    EXPECT_EQ(r.checker->pages_leaked(), 0u) << design;
    EXPECT_EQ(r.vm->bugs().total_hits(), 0u) << design;
    EXPECT_GT(r.vm->tdx()->stats().demotes, 0u) << design;
  }
}

// Many vCPUs fault the same few private pages (racing to link the same
// tables and to AUG the same gfns) while a VMM thread converts those pages
// to shared and back.
TEST(Stress, FaultsRaceConversionsOnTheSamePages) {
  VmConfig vc;
  vc.nr_vcpus = 4;
  vc.pool_pages = 1u << 14;
  Vm vm(vc);
  Checker ck(vm);
  constexpr uint64_t kRam = 1ull << 32;
  ASSERT_EQ(vm.create(), 0);
  ASSERT_EQ(vm.add_memslot(0, kRam, 2u << 20, kMemGuestMemfd), 0);
  ASSERT_EQ(vm.finalize(), 0);
  ASSERT_EQ(vm.set_memory_attributes(kRam, 2u << 20, true), 0);
  vm.set_vcpus_threaded(true);
  std::atomic<bool> stop{false};
  std::atomic<int> dead{0};
  std::vector<std::thread> vcpus;
  for (int v = 0; v < vc.nr_vcpus; v++)
    vcpus.emplace_back([&, v] {
      sync::RcuThread rcu;
      for (uint64_t i = 0; !stop.load(); i++) {
        const uint64_t gpa = kRam + ((i * 7 + v) % 16) * kPageSize;
        const bool priv = vm.gfn_is_private(Gfn::from_gpa(gpa));
        if (vm.vcpu_access(v, priv ? gpa : gpa | vm.shared_gpa_bit(), true) == ExitReason::VmDead) dead++;
      }
      vm.vcpu_exit(v);
    });
  {
    sync::RcuThread rcu;
    for (int k = 0; k < 40; k++) {
      EXPECT_EQ(vm.set_memory_attributes(kRam + (k % 8) * kPageSize, 4 * kPageSize, false), 0);
      EXPECT_EQ(vm.set_memory_attributes(kRam + (k % 8) * kPageSize, 4 * kPageSize, true), 0);
      if (k % 10 == 0) ck.check("while vCPUs run");
    }
  }
  stop = true;
  for (auto& t : vcpus) t.join();
  vm.set_vcpus_threaded(false);
  ck.check("after");
  EXPECT_EQ(dead.load(), 0);
  for (const auto& v : ck.violations()) ADD_FAILURE() << v.invariant << ": " << v.detail << " after " << v.op;
  vm.destroy();
  ck.check_end_of_life();
  EXPECT_TRUE(ck.ok());
}

// Two vCPUs fault a TD's private memory in at once, as the bench's
// populate row does: their PAGE.AUGs run in the module side by side and
// share the upper S-EPT levels, whose SEPT.ADDs they race to make. Every
// fault must map its page, with no site fired (TSan runs this one too).
TEST(Stress, TwoVcpusAugTheirHalvesOfATdAtOnce) {
  constexpr uint64_t kRam = 1ull << 32, kPages = 2048;
  for (int round = 0; round < 20; round++) {
    VmConfig vc;
    vc.nr_vcpus = 2;
    vc.pool_pages = kPages * 2 + (16u << 10);
    Vm vm(vc);
    Checker ck(vm);
    ASSERT_EQ(vm.create(), 0);
    ASSERT_EQ(vm.add_memslot(0, kRam, kPages << kPageShift, kMemGuestMemfd), 0);
    ASSERT_EQ(vm.finalize(), 0);
    ASSERT_EQ(vm.set_memory_attributes(kRam, kPages << kPageShift, true), 0);
    vm.set_vcpus_threaded(true);
    std::atomic<uint64_t> unmapped{0};
    std::vector<std::thread> vcpus;
    for (int v = 0; v < 2; v++)
      vcpus.emplace_back([&, v] {
        sync::RcuThread rcu;
        for (uint64_t i = v * kPages / 2; i < (v + 1) * kPages / 2; i++)
          if (vm.vcpu_fault(v, kRam + (i << kPageShift), true) != ExitReason::None) unmapped++;
        vm.vcpu_exit(v);
      });
    for (auto& t : vcpus) t.join();
    vm.set_vcpus_threaded(false);
    EXPECT_EQ(unmapped.load(), 0u) << "round " << round;
    EXPECT_EQ(vm.bugs().total_hits(), 0u) << "round " << round;
    EXPECT_EQ(vm.module()->stats(tdx::Leaf::MEM_PAGE_AUG).calls, kPages) << "round " << round;
    ck.check_full("after the faults");
    for (const auto& v : ck.violations()) ADD_FAILURE() << "round " << round << ": " << v.invariant << ": " << v.detail;
    vm.destroy();
    ck.check_end_of_life();
    if (HasFailure()) break;
  }
}

}  // namespace
}  // namespace mirrormmu::test
