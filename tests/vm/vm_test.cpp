// SPDX-License-Identifier: MIT
#include <gtest/gtest.h>

#include "check/checker.h"
#include "spte/spte.h"
#include "vm/vm.h"

namespace mirrormmu::test {
namespace {

constexpr uint64_t kRam = 1ull << 32;
constexpr uint64_t kBuf = 1ull << 30;

struct TdFixture {
  explicit TdFixture(int vcpus = 2, FaultInjector* inj = nullptr) : vm(cfg(vcpus), inj), ck(vm, opts(inj)) {
    EXPECT_EQ(vm.create(), 0);
    EXPECT_EQ(vm.add_memslot(0, kRam, 4 << 20, kMemGuestMemfd), 0);
    EXPECT_EQ(vm.add_memslot(1, kBuf, 4 << 20, 0), 0);
  }
  static VmConfig cfg(int vcpus) {
    VmConfig c;
    c.nr_vcpus = vcpus;
    c.pool_pages = 1u << 14;
    return c;
  }
  static CheckerOptions opts(FaultInjector* inj) {
    CheckerOptions o;
    o.bug_sites_are_failures = inj == nullptr;
    return o;
  }
  void boot() {
    ASSERT_EQ(vm.finalize(), 0);
    ASSERT_EQ(vm.set_memory_attributes(kRam, 4 << 20, true), 0);
  }
  void expect_clean(const char* after) {
    ck.check(after);
    for (const auto& v : ck.violations()) ADD_FAILURE() << v.invariant << ": " << v.detail << " after " << v.op;
  }
  uint64_t shared(uint64_t gpa) const { return gpa | vm.shared_gpa_bit(); }
  tdx::SeptState sept(uint64_t gpa) { return vm.module()->read_entry(gpa, 0).state; }

  Vm vm;
  Checker ck;
};

TEST(Vm, InitMemRegionUsesPageAddAndIsRefusedAfterFinalize) {
  TdFixture fx;
  ASSERT_EQ(fx.vm.init_mem_region(kRam, 4), 0);
  EXPECT_EQ(fx.vm.module()->stats(tdx::Leaf::MEM_PAGE_ADD).calls, 4u);
  EXPECT_EQ(fx.sept(kRam + 3 * kPageSize), tdx::SeptState::Mapped);  // measured, no accept needed
  fx.expect_clean("init");
  ASSERT_EQ(fx.vm.finalize(), 0);
  EXPECT_EQ(fx.vm.init_mem_region(kRam + 16 * kPageSize, 1), -EINVAL);
  EXPECT_EQ(fx.vm.finalize(), -EINVAL);
  fx.expect_clean("finalize");
}

TEST(Vm, PrivateAccessAugsThenTheGuestAccepts) {
  TdFixture fx;
  fx.boot();
  EXPECT_EQ(fx.vm.vcpu_access(0, kRam + 0x5000, true), ExitReason::None);
  EXPECT_EQ(fx.sept(kRam + 0x5000), tdx::SeptState::Mapped);
  EXPECT_EQ(fx.vm.module()->stats(tdx::Leaf::MEM_PAGE_AUG).calls, 1u);
  EXPECT_EQ(fx.vm.module()->stats(tdx::Leaf::TDG_MEM_PAGE_ACCEPT).calls, 1u);
  fx.expect_clean("access");
}

TEST(Vm, AccessOnTheWrongSideIsAMemoryFaultExit) {
  TdFixture fx;
  fx.boot();
  // Private memory through its shared alias, and shared memory privately.
  EXPECT_EQ(fx.vm.vcpu_access(0, fx.shared(kRam), false), ExitReason::MemoryFault);
  EXPECT_EQ(fx.vm.vcpu_access(0, kBuf, false), ExitReason::MemoryFault);
  EXPECT_EQ(fx.vm.vcpu_access(0, fx.shared(kBuf), true), ExitReason::None);
  // No memslot: emulated MMIO.
  EXPECT_EQ(fx.vm.vcpu_access(1, fx.shared(3ull << 30), false), ExitReason::Mmio);
  fx.expect_clean("accesses");
}

TEST(Vm, ConversionZapsTheSideBeingLeft) {
  TdFixture fx;
  fx.boot();
  for (int i = 0; i < 4; i++) ASSERT_EQ(fx.vm.vcpu_access(0, kRam + i * kPageSize, true), ExitReason::None);
  ASSERT_EQ(fx.vm.set_memory_attributes(kRam + kPageSize, 2 * kPageSize, false), 0);
  EXPECT_EQ(fx.sept(kRam), tdx::SeptState::Mapped);
  EXPECT_EQ(fx.sept(kRam + kPageSize), tdx::SeptState::Free);
  EXPECT_EQ(fx.sept(kRam + 2 * kPageSize), tdx::SeptState::Free);
  EXPECT_EQ(fx.sept(kRam + 3 * kPageSize), tdx::SeptState::Mapped);
  EXPECT_EQ(fx.vm.module()->stats(tdx::Leaf::MEM_PAGE_REMOVE).calls, 2u);
  fx.expect_clean("to shared");
  EXPECT_EQ(fx.vm.vcpu_access(1, fx.shared(kRam + kPageSize), true), ExitReason::None);
  // Back to private: the shared mapping goes.
  ASSERT_EQ(fx.vm.set_memory_attributes(kRam + kPageSize, kPageSize, true), 0);
  fx.expect_clean("to private");
  EXPECT_EQ(fx.vm.vcpu_access(1, kRam + kPageSize, true), ExitReason::None);
  fx.expect_clean("private again");
}

TEST(Vm, SharedMemoryIsMappedHugeWhereTheSlotAllows) {
  TdFixture fx;
  fx.boot();
  ASSERT_EQ(fx.vm.vcpu_access(0, fx.shared(kBuf + 0x3000), true), ExitReason::None);
  EXPECT_EQ(fx.vm.mmu().stats().pages(1), 1);
  EXPECT_EQ(fx.vm.mmu().stats().pages(0), 0);
  // Converting one page of it to private zaps the whole 2M leaf, and the
  // block is mapped at 4K from then on (mixed attributes).
  ASSERT_EQ(fx.vm.set_memory_attributes(kBuf + 0x1000, kPageSize, true), 0);
  EXPECT_EQ(fx.vm.mmu().stats().pages(1), 0);
  ASSERT_EQ(fx.vm.vcpu_access(0, fx.shared(kBuf + 0x3000), true), ExitReason::None);
  EXPECT_EQ(fx.vm.mmu().stats().pages(0), 1);
  fx.expect_clean("mixed");
}

TEST(Vm, DirtyLogReportsExactlyTheWrittenPagesAndSplitsHugePages) {
  TdFixture fx;
  fx.boot();
  for (uint64_t off = 0; off < (4 << 20); off += 2 << 20)
    ASSERT_EQ(fx.vm.vcpu_access(0, fx.shared(kBuf + off), true), ExitReason::None);
  ASSERT_EQ(fx.vm.mmu().stats().pages(1), 2);
  ASSERT_EQ(fx.vm.set_dirty_logging(1, true), 0);
  const uint64_t written[] = {0, 7, 64, 513, 1023};
  for (uint64_t p : written) ASSERT_EQ(fx.vm.vcpu_access(1, fx.shared(kBuf + p * kPageSize), true), ExitReason::None);
  // Reads do not dirty.
  ASSERT_EQ(fx.vm.vcpu_access(1, fx.shared(kBuf + 9 * kPageSize), false), ExitReason::None);
  auto bm = fx.vm.get_dirty_log(1);
  ASSERT_TRUE(bm.has_value());
  std::vector<uint64_t> want(bm->size(), 0);
  for (uint64_t p : written) want[p / 64] |= 1ull << (p % 64);
  EXPECT_EQ(*bm, want);
  EXPECT_EQ(fx.vm.mmu().stats().pages(1), 0);  // both 2M leaves were split by writes
  // The next round sees only new writes, including a page written before.
  ASSERT_EQ(fx.vm.vcpu_access(0, fx.shared(kBuf + 7 * kPageSize), true), ExitReason::None);
  bm = fx.vm.get_dirty_log(1);
  std::fill(want.begin(), want.end(), 0);
  want[0] = 1ull << 7;
  EXPECT_EQ(*bm, want);
  fx.expect_clean("dirty log");
  EXPECT_EQ(fx.vm.set_dirty_logging(0, true), -EINVAL);  // private memory
}

TEST(Vm, DeletingAMemslotZapsBothSides) {
  TdFixture fx;
  fx.boot();
  ASSERT_EQ(fx.vm.vcpu_access(0, kRam, true), ExitReason::None);
  ASSERT_EQ(fx.vm.set_memory_attributes(kRam + kPageSize, kPageSize, false), 0);
  ASSERT_EQ(fx.vm.vcpu_access(0, fx.shared(kRam + kPageSize), true), ExitReason::None);
  ASSERT_EQ(fx.vm.delete_memslot(0), 0);
  EXPECT_EQ(fx.sept(kRam), tdx::SeptState::Free);
  EXPECT_EQ(fx.vm.mmu().stats().pages(0), 0);
  fx.expect_clean("delete");
  EXPECT_EQ(fx.vm.vcpu_access(0, kRam, true), ExitReason::MemoryFault);
}

TEST(Vm, BadRequestsAreRefused) {
  TdFixture fx;
  EXPECT_EQ(fx.vm.add_memslot(2, kRam + 1, 4096, 0), -EINVAL);       // unaligned
  EXPECT_EQ(fx.vm.add_memslot(2, kRam + 4096, 4096, 0), -EEXIST);    // overlaps slot 0
  EXPECT_EQ(fx.vm.add_memslot(0, 8ull << 30, 4096, 0), -EEXIST);      // id in use
  EXPECT_EQ(fx.vm.add_memslot(2, fx.vm.shared_gpa_bit(), 4096, 0), -EINVAL);  // shared alias
  EXPECT_EQ(fx.vm.add_memslot(2, 8ull << 30, 0, 0), -EINVAL);
  EXPECT_EQ(fx.vm.delete_memslot(7), -EINVAL);
  EXPECT_EQ(fx.vm.set_memory_attributes(8ull << 30, 4096, true), -EINVAL);  // no slot
  EXPECT_EQ(fx.vm.vcpu_access(5, kRam, true), ExitReason::VmDead);
  EXPECT_FALSE(fx.vm.get_dirty_log(1).has_value());  // logging off
  EXPECT_EQ(fx.vm.create(), -EEXIST);
  fx.expect_clean("refusals");
}

TEST(Vm, TeardownReclaimsEverything) {
  TdFixture fx;
  ASSERT_EQ(fx.vm.init_mem_region(kRam, 2), 0);
  fx.boot();
  for (int i = 0; i < 600; i += 5) ASSERT_EQ(fx.vm.vcpu_access(i % 2, kRam + i * kPageSize, true), ExitReason::None);
  ASSERT_EQ(fx.vm.vcpu_access(0, fx.shared(kBuf), true), ExitReason::None);
  fx.vm.destroy();
  EXPECT_EQ(fx.vm.module()->lifecycle(), tdx::Lifecycle::Teardown);
  EXPECT_EQ(fx.vm.module()->chldcnt(), 0u);
  EXPECT_EQ(fx.vm.pool().in_use(), 0u);
  fx.ck.check_end_of_life();
  EXPECT_TRUE(fx.ck.ok());
  EXPECT_EQ(fx.ck.pages_leaked(), 0u);
}

// kvm_destroy_vm() as the kernel orders it: the HKID released first
// (vm_pre_destroy), then kvm_destroy_vcpus() (TDCX/TDVPR), kvm_mmu_uninit_vm()
// (S-EPT pages), and vm_destroy (TDCS pages, the TDR last).
TEST(Vm, TeardownReclaimsInKvmDestroyVmOrder) {
  struct Recorder final : tdx::SeamcallObserver {
    explicit Recorder(PfnPool& p) : pool(p) {}
    void on_seamcall(tdx::Leaf leaf, uint64_t gpa, int, tdx::Status st) override {
      if (leaf == tdx::Leaf::MNG_KEY_FREEID) seq.push_back('K');
      if (leaf != tdx::Leaf::PHYMEM_PAGE_RECLAIM || st != tdx::TDX_SUCCESS) return;
      seq.push_back(pool.owner(Pfn{gpa >> kPageShift}) == PageOwner::SeptPage ? 'S' : 'C');
    }
    PfnPool& pool;
    std::string seq;
  };
  TdFixture fx;
  Recorder rec(fx.vm.pool());
  fx.vm.module()->set_observer(&rec);
  ASSERT_EQ(fx.vm.init_mem_region(kRam, 2), 0);
  fx.boot();
  for (int i = 0; i < 1024; i += 64) ASSERT_EQ(fx.vm.vcpu_access(i % 2, kRam + i * kPageSize, true), ExitReason::None);
  fx.vm.destroy();
  const tdx::ModuleConfig& mc = fx.vm.module()->config();
  const size_t vcpu_pages = 2 * (1 + size_t(mc.tdvpx_pages)), vm_pages = size_t(mc.tdcs_pages) + 1;
  const size_t sept = rec.seq.size() - 1 - vcpu_pages - vm_pages;
  ASSERT_GT(sept, 0u) << rec.seq;
  EXPECT_EQ(rec.seq, "K" + std::string(vcpu_pages, 'C') + std::string(sept, 'S') + std::string(vm_pages, 'C'));
  EXPECT_EQ(fx.vm.pool().in_use(), 0u);
}

TEST(Vm, ZeroStepExitWithoutEntryIsHandledAsAnEptViolationAtItsGpa) {
  TdFixture fx;
  fx.boot();
  ASSERT_EQ(fx.vm.vcpu_access(0, kRam, true), ExitReason::None);
  // The guest is stuck at one instruction faulting on kRam + 0x9000: the
  // seventh violation logs the GPA. (Here the module is told directly; the
  // vCPU's own loop would map the page at the first fault.)
  const uint64_t stuck = kRam + 0x9000;
  for (int i = 0; i < 7; i++) fx.vm.module()->vcpu_ept_violation(0, stuck, ~0ull);
  ASSERT_TRUE(fx.vm.module()->zero_step_active(0));
  fx.vm.kick_all_vcpus_out();
  const auto enters = fx.vm.module()->stats(tdx::Leaf::VP_ENTER).by_status;
  // The next entry is refused with an EPT-violation exit at the logged GPA;
  // KVM maps it and enters again, and the access at another GPA completes.
  ASSERT_EQ(fx.vm.vcpu_access(0, kRam + 0x1000, true), ExitReason::None);
  const auto after = fx.vm.module()->stats(tdx::Leaf::VP_ENTER).by_status;
  const auto count = [](const auto& m, tdx::Status s) { return m.count(s) ? m.at(s) : 0; };
  EXPECT_EQ(count(after, tdx::TDX_EXIT_EPT_VIOLATION), count(enters, tdx::TDX_EXIT_EPT_VIOLATION) + 1);
  EXPECT_NE(fx.sept(stuck), tdx::SeptState::Free);
  fx.expect_clean("zero-step exit");
}

// A TD that went fatal (a machine check in the guest) ends KVM_RUN with an
// internal error. Its guest_memfd invalidation then meets TD_FATAL at BLOCK,
// because the HKID is still assigned then: as tdx.c reads, that is a
// TDX_BUG_ON, and the leaf that could not be removed keeps CHLDCNT above
// zero, so the TDR cannot be reclaimed either. Teardown still completes.
TEST(Vm, AFatalTdEndsKvmRunWithAnInternalErrorAndItsTeardownBugsTheVm) {
  TdFixture fx;
  fx.boot();
  ASSERT_EQ(fx.vm.vcpu_access(0, kRam, true), ExitReason::None);
  fx.vm.kick_all_vcpus_out();
  fx.vm.module()->set_td_fatal();
  EXPECT_EQ(fx.vm.vcpu_access(0, kRam + 0x1000, true), ExitReason::InternalError);
  EXPECT_FALSE(fx.vm.bugs().bugged());
  fx.vm.destroy();
  EXPECT_TRUE(fx.vm.bugs().bugged());
  EXPECT_EQ(fx.vm.bugs().hits(Site::tdh_mem_range_block), 1u);
  const auto block = fx.vm.module()->stats(tdx::Leaf::MEM_RANGE_BLOCK).by_status;
  EXPECT_EQ(block.count(tdx::TDX_TD_FATAL), 1u);
  EXPECT_EQ(fx.vm.pool().in_use(), 1u);  // the TDR
}

TEST(Vm, ABuggedVmRefusesWorkAndStillTearsDown) {
  FaultInjector inj;
  TdFixture fx(2, &inj);
  fx.boot();
  ASSERT_EQ(fx.vm.vcpu_access(0, kRam, true), ExitReason::None);
  // The next SEAMCALL fails with a non-BUSY error: TDX_BUG_ON.
  inj.arm(InjectPoint::Seamcall, inj.seen(InjectPoint::Seamcall) + 1, Injection::Error);
  EXPECT_EQ(fx.vm.vcpu_access(0, kRam + kPageSize, true), ExitReason::VmDead);
  EXPECT_TRUE(fx.vm.bugs().bugged());
  EXPECT_EQ(fx.vm.set_memory_attributes(kRam, kPageSize, false), -EIO);
  EXPECT_EQ(fx.vm.vcpu_access(1, kRam, true), ExitReason::VmDead);
  fx.vm.destroy();
  fx.ck.check_end_of_life();
  EXPECT_TRUE(fx.ck.ok());
  EXPECT_EQ(fx.ck.pages_leaked(), 0u);
}

TEST(Vm, NormalVmHasOnlyDirectRoots) {
  VmConfig c;
  c.type = VmType::Normal;
  c.pool_pages = 1u << 14;
  Vm vm(c);
  Checker ck(vm);
  ASSERT_EQ(vm.create(), 0);
  ASSERT_EQ(vm.add_memslot(0, kRam, 4 << 20, 0), 0);
  EXPECT_EQ(vm.add_memslot(1, kBuf, 4 << 20, kMemGuestMemfd), -EINVAL);
  EXPECT_EQ(vm.vcpu_access(0, kRam + 0x1000, true), ExitReason::None);
  EXPECT_EQ(vm.vcpu_access(0, 3ull << 30, true), ExitReason::Mmio);
  EXPECT_EQ(vm.mmu().stats().pages(1), 1);
  EXPECT_EQ(vm.module(), nullptr);
  ck.check("normal");
  EXPECT_TRUE(ck.ok());
  vm.destroy();
  ck.check_end_of_life();
  EXPECT_TRUE(ck.ok()) << ck.describe();
}

// The selftests' dirty_log_perf_test view: pages_1g/2m/4k as dirty logging
// starts. With eager splitting the whole slot is 4K before the first write;
// without it, the write fault splits only the path it needs.
void one_gig_dirty_logging(bool eager, int64_t want_2m, int64_t want_4k) {
  VmConfig c;
  c.type = VmType::Normal;
  c.pool_pages = 3u << 18;
  c.shared_backing = PgLevel::k1G;
  c.eager_page_split = eager;
  Vm vm(c);
  Checker ck(vm);
  ASSERT_EQ(vm.create(), 0);
  ASSERT_EQ(vm.add_memslot(0, 1ull << 30, 1ull << 30, 0), 0);
  ASSERT_EQ(vm.vcpu_access(0, (1ull << 30) + 0x123000, true), ExitReason::None);
  EXPECT_EQ(vm.mmu().stats().pages(2), 1);
  ASSERT_EQ(vm.set_dirty_logging(0, true), 0);
  ASSERT_EQ(vm.vcpu_access(0, (1ull << 30) + 0x123000, true), ExitReason::None);
  EXPECT_EQ(vm.mmu().stats().pages(2), 0);
  EXPECT_EQ(vm.mmu().stats().pages(1), want_2m);
  EXPECT_EQ(vm.mmu().stats().pages(0), want_4k);
  ck.check("1G");
  EXPECT_TRUE(ck.ok()) << ck.describe();
  vm.destroy();
  ck.check_end_of_life();
  EXPECT_TRUE(ck.ok()) << ck.describe();
}

TEST(Vm, OneGigBackingIsSplitEagerlyWhenDirtyLoggingStarts) {
  // 1G -> 512 x 2M -> each again 512 x 4K, all with the shared lock.
  one_gig_dirty_logging(true, 0, 512 * 512);
}

TEST(Vm, OneGigBackingIsSplitByTheWriteFaultWithoutEagerSplitting) {
  // 1G -> 512 x 2M -> the written 2M split again into 512 x 4K.
  one_gig_dirty_logging(false, 511, 512);
}

}  // namespace
}  // namespace mirrormmu::test

namespace mirrormmu::test {
namespace {

// kvm_mmu_zap_all_fast() on a TD: the direct root goes and comes back on the
// next shared access; the mirror root and every private mapping stay.
TEST(Vm, FastZapOfATdLeavesTheMirrorAlone) {
  TdFixture fx;
  fx.boot();
  ASSERT_EQ(fx.vm.vcpu_access(0, kRam + 0x5000, true), ExitReason::None);
  ASSERT_EQ(fx.vm.vcpu_access(1, fx.shared(kBuf + 0x3000), true), ExitReason::None);
  const uint64_t augs = fx.vm.module()->stats(tdx::Leaf::MEM_PAGE_AUG).calls;
  fx.vm.zap_all_fast();
  fx.expect_clean("zap_all_fast");
  EXPECT_EQ(fx.sept(kRam + 0x5000), tdx::SeptState::Mapped);
  ASSERT_EQ(fx.vm.vcpu_access(0, kRam + 0x5000, false), ExitReason::None);
  ASSERT_EQ(fx.vm.vcpu_access(1, fx.shared(kBuf + 0x3000), false), ExitReason::None);
  EXPECT_EQ(fx.vm.module()->stats(tdx::Leaf::MEM_PAGE_AUG).calls, augs) << "nothing private was re-added";
  fx.expect_clean("accesses after the fast zap");
}

// The classic mistake: a fast zap that takes the mirror root with the
// direct ones. The checker names it.
TEST(Vm, AFastZapThatTakesTheMirrorIsCaught) {
  VmConfig c = TdFixture::cfg(1);
  c.what_if.fast_zap_mirror = true;
  Vm vm(c);
  Checker ck(vm, TdFixture::opts(nullptr));
  ASSERT_EQ(vm.create(), 0);
  ASSERT_EQ(vm.add_memslot(0, kRam, 4 << 20, kMemGuestMemfd), 0);
  ASSERT_EQ(vm.finalize(), 0);
  ASSERT_EQ(vm.set_memory_attributes(kRam, 4 << 20, true), 0);
  ASSERT_EQ(vm.vcpu_access(0, kRam + 0x5000, true), ExitReason::None);
  vm.zap_all_fast();
  ck.check("zap_all_fast");
  bool named = false;
  for (const auto& v : ck.violations()) named |= v.invariant == "mirror_root_invalidated";
  EXPECT_TRUE(named) << ck.describe();
}

}  // namespace
}  // namespace mirrormmu::test
