// SPDX-License-Identifier: MIT
// KVM's vcpu->mutex: one thread at a time runs a vCPU. The model takes no
// lock for it (a vCPU's stats are bumped without a locked instruction
// because of it); a second thread that comes into a vCPU another thread is
// running is reported. The planted case: while vCPU 0's access sits at a
// scheduling point, another thread runs an access of vCPU 0.
#include <gtest/gtest.h>

#include <functional>
#include <thread>
#include <utility>

#include "check/checker.h"
#include "sync/sched.h"
#include "vm/vm.h"

namespace mirrormmu::test {
namespace {

constexpr uint64_t kGpa = 1ull << 30;

std::function<void()> g_once;

void run_once(sync::PointKind /*kind*/, const void* /*object*/) {
  if (!g_once) return;
  const std::function<void()> fn = std::exchange(g_once, nullptr);
  fn();
}

struct Fixture {
  Fixture() : vm(cfg()), ck(vm) {
    EXPECT_EQ(vm.create(), 0);
    EXPECT_EQ(vm.add_memslot(0, kGpa, 2 << 20, 0), 0);
    vm.set_vcpus_threaded(true);
  }
  ~Fixture() { sync::set_sched_handler(nullptr); }
  static VmConfig cfg() {
    VmConfig c;
    c.type = VmType::Normal;
    c.nr_vcpus = 2;
    c.pool_pages = 1u << 12;
    c.shared_backing = PgLevel::k4K;
    return c;
  }
  // vCPU 0 touches a page; inside that access, another thread has vCPU
  // `other` touch the next one. Returns what the checker then reports.
  std::vector<std::string> nested_access(int other) {
    ExitReason inner = ExitReason::VmDead;
    g_once = [&] { std::thread([&] { inner = vm.vcpu_access(other, kGpa + kPageSize, true); }).join(); };
    sync::set_sched_handler(run_once);
    const ExitReason outer = vm.vcpu_access(0, kGpa, true);
    sync::set_sched_handler(nullptr);
    EXPECT_FALSE(g_once) << "the access of vCPU 0 met no scheduling point";
    g_once = nullptr;
    EXPECT_EQ(outer, ExitReason::None);
    EXPECT_EQ(inner, ExitReason::None);
    ck.check("nested access");
    std::vector<std::string> v;
    for (const auto& x : ck.violations()) v.push_back(x.invariant);
    return v;
  }

  Vm vm;
  Checker ck;
};

TEST(VcpuMutex, ASecondThreadInARunningVcpuIsReported) {
  Fixture fx;
  const auto v = fx.nested_access(0);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0], "vcpu_mutex");
}

TEST(VcpuMutex, AnotherVcpuOnAnotherThreadIsFine) {
  Fixture fx;
  EXPECT_TRUE(fx.nested_access(1).empty());
}

// The same thread coming back into its own vCPU (an access that faults
// runs the fault inside it) is one run, not two.
TEST(VcpuMutex, NestedEntriesOfOneThreadAreOneRun) {
  Fixture fx;
  ASSERT_EQ(fx.vm.vcpu_access(0, kGpa + 2 * kPageSize, true), ExitReason::None);
  ASSERT_EQ(fx.vm.vcpu_fault(0, kGpa + 3 * kPageSize, true), ExitReason::None);
  fx.ck.check("one thread");
  EXPECT_TRUE(fx.ck.violations().empty());
}

}  // namespace
}  // namespace mirrormmu::test
