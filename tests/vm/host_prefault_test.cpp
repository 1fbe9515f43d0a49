// SPDX-License-Identifier: MIT
// Host memory that several memslots alias, the MMU notifier that follows its
// mprotect()/munmap(), and KVM_PRE_FAULT_MEMORY, on a TD: what the
// mmu-stress and pre-fault-memory workloads build on, with the classic bug
// of each planted and caught.
#include <gtest/gtest.h>

#include "check/checker.h"
#include "spte/spte.h"
#include "vm/vm.h"

namespace mirrormmu::test {
namespace {

constexpr uint64_t kImage = 0;
constexpr uint64_t kAlias = 1ull << 32;  // two 2M slots over one memfd from here
constexpr uint64_t kSlot = 2ull << 20;

struct Fixture {
  explicit Fixture(WhatIf w = {}) : vm(cfg(w)), ck(vm) {
    EXPECT_EQ(vm.create(), 0);
    EXPECT_EQ(vm.add_memslot(0, kImage, 2 << 20, kMemGuestMemfd), 0);
    mem = vm.create_host_memory(kSlot, PgLevel::k4K);
    EXPECT_TRUE(mem);
    EXPECT_EQ(vm.add_memslot(1, kAlias, kSlot, 0, mem), 0);
    EXPECT_EQ(vm.add_memslot(2, kAlias + kSlot, kSlot, 0, mem), 0);
  }
  static VmConfig cfg(WhatIf w) {
    VmConfig c;
    c.nr_vcpus = 1;
    c.pool_pages = 1u << 13;
    c.shared_backing = PgLevel::k4K;
    c.what_if = w;
    return c;
  }
  uint64_t shared(uint64_t gpa) const { return gpa | vm.shared_gpa_bit(); }
  std::vector<std::string> violations(const char* after) {
    ck.check(after);
    std::vector<std::string> v;
    for (const auto& x : ck.violations()) v.push_back(x.invariant + ": " + x.detail);
    return v;
  }

  Vm vm;
  Checker ck;
  std::shared_ptr<Backing> mem;
};

TEST(HostMemory, AliasesMapTheSameFrames) {
  Fixture fx;
  ASSERT_EQ(fx.vm.finalize(), 0);
  ASSERT_EQ(fx.vm.vcpu_access(0, fx.shared(kAlias + 5 * kPageSize), true), ExitReason::None);
  ASSERT_EQ(fx.vm.vcpu_access(0, fx.shared(kAlias + kSlot + 5 * kPageSize), false), ExitReason::None);
  EXPECT_EQ(fx.mem->populated(), 1u);  // one frame behind both GPAs
  EXPECT_TRUE(fx.violations("aliases").empty());
}

TEST(HostMemory, ReadOnlyMemoryRefusesWritesAndMapsReadsReadOnly) {
  Fixture fx;
  ASSERT_EQ(fx.vm.finalize(), 0);
  const uint64_t a = fx.shared(kAlias), b = fx.shared(kAlias + kSlot);
  ASSERT_EQ(fx.vm.vcpu_access(0, a, true), ExitReason::None);
  ASSERT_EQ(fx.vm.vcpu_access(0, b, true), ExitReason::None);
  ASSERT_EQ(fx.vm.host_protect(fx.mem, 0, kSlot, HostProt::ReadOnly), 0);
  // The notifier unmapped both aliases: the writes fault, and KVM_RUN
  // fails with EFAULT.
  EXPECT_EQ(fx.vm.mapped_level(0, a), 0);
  EXPECT_EQ(fx.vm.mapped_level(0, b), 0);
  EXPECT_EQ(fx.vm.vcpu_access(0, a, true), ExitReason::HostFault);
  EXPECT_EQ(fx.vm.vcpu_access(0, b, true), ExitReason::HostFault);
  // A read maps the page, read-only and not MMU-writable: nothing but a
  // new fault may make it writable.
  ASSERT_EQ(fx.vm.vcpu_access(0, a, false), ExitReason::None);
  EXPECT_EQ(fx.vm.mapped_level(0, a), 1);
  EXPECT_EQ(fx.vm.vcpu_access(0, a, true), ExitReason::HostFault);
  EXPECT_TRUE(fx.violations("read-only").empty());
  ASSERT_EQ(fx.vm.host_protect(fx.mem, 0, kSlot, HostProt::ReadWrite), 0);
  EXPECT_EQ(fx.vm.vcpu_access(0, a, true), ExitReason::None);
  // munmap: every access fails, and nothing stays mapped.
  ASSERT_EQ(fx.vm.host_protect(fx.mem, 0, kSlot / 2, HostProt::None), 0);
  EXPECT_EQ(fx.vm.vcpu_access(0, b, false), ExitReason::HostFault);
  EXPECT_EQ(fx.vm.vcpu_access(0, fx.shared(kAlias + kSlot / 2), false), ExitReason::None);
  EXPECT_TRUE(fx.violations("munmap").empty());
  EXPECT_EQ(fx.vm.host_protect(fx.mem, kSlot, kPageSize, HostProt::None), -EINVAL);  // past the memory
}

// The classic: the notifier stops at the first memslot that maps the host
// range; the alias keeps a writable leaf over read-only memory.
TEST(HostMemory, NotifierThatMissesAnAliasIsCaught) {
  WhatIf w;
  w.notifier_first_slot_only = true;
  Fixture fx(w);
  ASSERT_EQ(fx.vm.finalize(), 0);
  const uint64_t b = fx.shared(kAlias + kSlot);
  ASSERT_EQ(fx.vm.vcpu_access(0, b, true), ExitReason::None);
  ASSERT_EQ(fx.vm.host_protect(fx.mem, 0, kSlot, HostProt::ReadOnly), 0);
  EXPECT_EQ(fx.vm.vcpu_access(0, b, true), ExitReason::None);  // the guest wrote read-only memory
  const auto v = fx.violations("mprotect");
  ASSERT_FALSE(v.empty());
  EXPECT_EQ(v.front().rfind("host_prot: gfn 0x100200 (memslot 2) is mapped writable", 0), 0u) << v.front();
}

TEST(PreFaultMemory, FollowsTheIoctlsContract) {
  Fixture fx;
  uint64_t gpa = kImage, size = 4 * kPageSize;
  ASSERT_EQ(fx.vm.add_memslot(3, 1ull << 33, kSlot, kMemGuestMemfd), 0);
  EXPECT_EQ(fx.vm.pre_fault_memory(0, &gpa, &size), -EOPNOTSUPP);  // not before KVM_TDX_FINALIZE_VM
  ASSERT_EQ(fx.vm.finalize(), 0);
  ASSERT_EQ(fx.vm.set_memory_attributes(1ull << 33, kSlot, true), 0);
  gpa = 1ull << 33, size = 3;
  EXPECT_EQ(fx.vm.pre_fault_memory(0, &gpa, &size), -EINVAL);
  // Private: AUGed into the S-EPT, PENDING until the guest accepts.
  gpa = 1ull << 33, size = 8 * kPageSize;
  ASSERT_EQ(fx.vm.pre_fault_memory(0, &gpa, &size), 0);
  EXPECT_EQ(size, 0u);
  EXPECT_EQ(gpa, (1ull << 33) + 8 * kPageSize);
  EXPECT_EQ(fx.vm.module()->stats(tdx::Leaf::MEM_PAGE_AUG).calls, 8u);
  for (uint64_t i = 0; i < 8; i++) EXPECT_EQ(fx.vm.mapped_level(0, (1ull << 33) + i * kPageSize), 1);
  // Shared, named without the shared bit: mapped in the direct root.
  gpa = kAlias, size = 2 * kPageSize;
  ASSERT_EQ(fx.vm.pre_fault_memory(0, &gpa, &size), 0);
  EXPECT_EQ(fx.vm.mapped_level(0, fx.shared(kAlias + kPageSize)), 1);
  // Running off the end of the memslots: what was mapped counts, then the
  // first page with no memslot is -ENOENT with the size unchanged.
  gpa = kAlias + 2 * kSlot - kPageSize, size = 2 * kPageSize;
  ASSERT_EQ(fx.vm.pre_fault_memory(0, &gpa, &size), 0);
  EXPECT_EQ(size, kPageSize);
  EXPECT_EQ(fx.vm.pre_fault_memory(0, &gpa, &size), -ENOENT);
  EXPECT_EQ(size, kPageSize);
  EXPECT_TRUE(fx.violations("prefault").empty());
}

// The progress computed from the largest level the slot allows instead of
// the level mapped skips the rest of the 2M block: reported done, unmapped.
TEST(PreFaultMemory, ProgressPastWhatWasMappedLeavesPagesUnmapped) {
  WhatIf w;
  w.prefault_progress_max_level = true;
  Fixture fx(w);
  ASSERT_EQ(fx.vm.finalize(), 0);
  uint64_t gpa = kAlias, size = kSlot;
  ASSERT_EQ(fx.vm.pre_fault_memory(0, &gpa, &size), 0);
  EXPECT_EQ(size, 0u);
  EXPECT_EQ(fx.vm.mapped_level(0, fx.shared(kAlias)), 1);
  EXPECT_EQ(fx.vm.mapped_level(0, fx.shared(kAlias + kPageSize)), 0);
}

}  // namespace
}  // namespace mirrormmu::test
