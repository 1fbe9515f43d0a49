// SPDX-License-Identifier: MIT
// A TD's hardware: the shared EPT's TLBs (flushed by KVM's requests) and
// the private side's (flushed only by TDH.VP.ENTER in a new TD epoch), and
// the planted bug each one exists to catch.
#include <gtest/gtest.h>

#include "check/checker.h"
#include "vm/vm.h"

namespace mirrormmu::test {
namespace {

constexpr uint64_t kRam = 1ull << 32;

struct Td {
  explicit Td(WhatIf w) : vm(cfg(w)), ck(vm) {
    EXPECT_EQ(vm.create(), 0);
    EXPECT_EQ(vm.add_memslot(0, kRam, 4 << 20, kMemGuestMemfd), 0);
    EXPECT_EQ(vm.finalize(), 0);
    EXPECT_EQ(vm.set_memory_attributes(kRam, 4 << 20, true), 0);
  }
  static VmConfig cfg(WhatIf w) {
    VmConfig c;
    c.nr_vcpus = 2;
    c.pool_pages = 1u << 14;
    c.what_if = w;
    return c;
  }
  uint64_t shared(uint64_t gpa) const { return gpa | vm.shared_gpa_bit(); }
  // The invariants the check after `op` names, in order.
  std::vector<std::string> check(const char* op) {
    ck.check(op);
    std::vector<std::string> out;
    for (const auto& v : ck.violations()) out.push_back(v.invariant + ": " + v.detail);
    return out;
  }
  Vm vm;
  Checker ck;
};

bool names(const std::vector<std::string>& v, const std::string& invariant) {
  for (const auto& s : v)
    if (s.rfind(invariant + ":", 0) == 0) return true;
  return false;
}

// A vCPU that touched a private page stays in the guest while the VMM
// converts the page to shared: BLOCK, TRACK, kick, REMOVE. The kick makes
// it re-enter in the new epoch, whose entry flushes what it cached.
TEST(TdTlb, ConvertingAPageAVcpuCachedIsCleanWithTrackAndKick) {
  Td td({});
  ASSERT_EQ(td.vm.vcpu_access(0, kRam + 0x3000, true), ExitReason::None);
  ASSERT_EQ(td.vm.set_memory_attributes(kRam + 0x3000, 0x1000, false), 0);
  const auto v = td.check("convert");
  EXPECT_TRUE(v.empty()) << v.front();
  EXPECT_EQ(td.vm.module()->tlb_violation(), "");
  // Back in (a new epoch), the shared alias works.
  EXPECT_EQ(td.vm.vcpu_access(0, td.shared(kRam + 0x3000), true), ExitReason::None);
  EXPECT_TRUE(td.check("shared access").empty());
}

// Without the kick the module itself refuses: TRACK finds the old epoch
// busy and REMOVE finds the block untracked; KVM's TDX_BUG_ON fires.
TEST(TdTlb, WithoutTheKickTheModuleRefusesTheRemove) {
  WhatIf w;
  w.no_kick_after_track = true;
  Td td(w);
  ASSERT_EQ(td.vm.vcpu_access(0, kRam + 0x3000, true), ExitReason::None);
  td.vm.set_memory_attributes(kRam + 0x3000, 0x1000, false);
  const auto v = td.check("convert");
  EXPECT_TRUE(names(v, "bug_site")) << (v.empty() ? "clean" : v.front());
  EXPECT_GT(td.vm.bugs().hits(Site::tdh_mem_page_remove), 0u);
  EXPECT_EQ(td.vm.module()->tlb_violation(), "") << "the page never left the TD";
}

// A module that does not count vCPUs is saved by KVM's kick alone...
TEST(TdTlb, ALaxModuleIsCoveredByTheKick) {
  WhatIf w;
  w.lax_tlb_tracking = true;
  Td td(w);
  ASSERT_EQ(td.vm.vcpu_access(0, kRam + 0x3000, true), ExitReason::None);
  ASSERT_EQ(td.vm.set_memory_attributes(kRam + 0x3000, 0x1000, false), 0);
  const auto v = td.check("convert");
  EXPECT_TRUE(v.empty()) << v.front();
}

// ...and without both, the page goes back to the host while the vCPU's TLB
// still translates it: only the private TLB model sees that.
TEST(TdTlb, ALaxModuleWithoutTheKickLeavesAStaleTranslation) {
  WhatIf w;
  w.lax_tlb_tracking = true;
  w.no_kick_after_track = true;
  Td td(w);
  ASSERT_EQ(td.vm.vcpu_access(0, kRam + 0x3000, true), ExitReason::None);
  ASSERT_EQ(td.vm.set_memory_attributes(kRam + 0x3000, 0x1000, false), 0);
  const auto v = td.check("convert");
  EXPECT_TRUE(names(v, "tlb_use_after_free")) << (v.empty() ? "clean" : v.front());
  EXPECT_EQ(td.vm.bugs().hits(Site::tdh_mem_page_remove), 0u) << "the module allowed it";
}

// The shared side: a vCPU caches the shared alias writable, the VMM
// converts the page back to private. KVM's flush drops the translation
// before the ioctl returns; without it the vCPU could still write there.
TEST(TdTlb, ConvertingToPrivateFlushesTheSharedTranslation) {
  for (bool planted : {false, true}) {
    WhatIf w;
    w.no_flush_after_unmap = planted;
    Td td(w);
    ASSERT_EQ(td.vm.set_memory_attributes(kRam, 0x10000, false), 0);
    ASSERT_EQ(td.vm.vcpu_access(1, td.shared(kRam + 0x2000), true), ExitReason::None);
    ASSERT_EQ(td.vm.set_memory_attributes(kRam, 0x10000, true), 0);
    const auto v = td.check("convert to private");
    if (planted)
      EXPECT_TRUE(names(v, "tlb_stale")) << (v.empty() ? "clean" : v.front());
    else
      EXPECT_TRUE(v.empty()) << v.front();
  }
}

// A fast zap frees the old direct root's tables without a flush: safe only
// because every vCPU reloads (and flushes) before it runs again.
TEST(TdTlb, AFastZapReloadsBeforeTheOldTablesGo) {
  Td td({});
  ASSERT_EQ(td.vm.set_memory_attributes(kRam, 0x10000, false), 0);
  ASSERT_EQ(td.vm.vcpu_access(1, td.shared(kRam + 0x2000), true), ExitReason::None);
  td.vm.zap_all_fast();
  EXPECT_TRUE(td.check("fast zap").empty());
  EXPECT_EQ(td.vm.vcpu_access(1, td.shared(kRam + 0x2000), false), ExitReason::None);
  td.vm.destroy();
  td.ck.check_end_of_life();
  EXPECT_TRUE(td.ck.ok()) << td.ck.describe();
}

}  // namespace
}  // namespace mirrormmu::test
