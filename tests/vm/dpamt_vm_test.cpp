// SPDX-License-Identifier: MIT
// Dynamic PAMT on the KVM side: a TD's whole life with dynamic_pamt on
// lends the module a page pair per 2M region it uses at 4K and takes every
// pair back; KVM's refcount per region matches the module's 4K entries; a
// 2M AUG needs no pair while a DEMOTE installs one; failing allocations
// leak nothing; and with DPAMT off nothing of it happens.
#include <gtest/gtest.h>

#include <cerrno>
#include <functional>
#include <string>

#include "check/checker.h"
#include "explore/strategy.h"
#include "sync/det_engine.h"
#include "sync/rcu.h"
#include "vm/vm.h"

namespace mirrormmu::test {
namespace {

constexpr uint64_t kRam = 1ull << 32;
constexpr uint64_t kBuf = 1ull << 30;
constexpr uint64_t k4K = kPageSize;
constexpr uint64_t k2M = 2ull << 20;
constexpr uint64_t kRamSize = 4 * k2M;

VmConfig dpamt_cfg(bool dpamt = true, bool huge = false, std::string design = "baseline") {
  VmConfig c;
  c.nr_vcpus = 2;
  c.pool_pages = 1u << 14;
  c.dynamic_pamt = dpamt;
  c.huge_pages = huge;
  c.design = std::move(design);
  return c;
}

struct DpamtTd {
  explicit DpamtTd(const VmConfig& c = dpamt_cfg(), FaultInjector* inj = nullptr)
      : vm(c, inj), ck(vm, CheckerOptions{.bug_sites_are_failures = inj == nullptr}) {}

  void build(uint64_t image_pages) {
    ASSERT_EQ(vm.create(), 0);
    ASSERT_EQ(vm.add_memslot(0, kRam, kRamSize, kMemGuestMemfd), 0);
    ASSERT_EQ(vm.add_memslot(1, kBuf, 4 << 20, 0), 0);
    if (image_pages) {
      ASSERT_EQ(vm.init_mem_region(kRam, image_pages), 0);
    }
    ASSERT_EQ(vm.finalize(), 0);
    ASSERT_EQ(vm.set_memory_attributes(kRam, kRamSize, true), 0);
  }
  void expect_clean(const char* after) {
    ck.check(after);
    EXPECT_TRUE(ck.ok()) << ck.describe();
  }
  void end_of_life() {
    vm.destroy();
    ck.check_end_of_life();
    EXPECT_TRUE(ck.ok()) << ck.describe();
    EXPECT_EQ(vm.module()->pamt_pairs(), 0u);
    EXPECT_EQ(vm.pool().count(PageOwner::Pamt), 0u);
    EXPECT_EQ(vm.pool().in_use(), 0u);
  }
  tdx::TdxModule::LeafStats leaf(tdx::Leaf l) { return vm.module()->stats(l); }
  uint64_t calls(tdx::Leaf l) { return leaf(l).calls; }
  uint64_t successes(tdx::Leaf l) {
    const tdx::TdxModule::LeafStats st = leaf(l);
    const auto it = st.by_status.find(tdx::TDX_SUCCESS);
    return it == st.by_status.end() ? 0 : it->second;
  }
  uint64_t shared(uint64_t gpa) const { return gpa | vm.shared_gpa_bit(); }
  tdx::TdxModule::EntryView sept(uint64_t gpa, int level) { return vm.module()->read_entry(gpa, level); }

  // KVM's refcount of every 2M host region against the module's view: a
  // region with references has its pair and exactly that many frames with
  // a 4K entry (pair pages live in the module's bitmap and do not count); a
  // region without references has no pair. Only in a quiescent state.
  void expect_refcounts_match(const char* when) {
    const tdx::TdxModule& m = *vm.module();
    uint64_t regions_with_refs = 0;
    for (uint64_t base = 0; base < vm.pool().size(); base += kSptePerPage) {
      const uint32_t refs = vm.tdx()->pamt_refcount(Pfn{base});
      if (refs == 0) {
        EXPECT_FALSE(m.pamt_pair_present(Pfn{base})) << when << ": region " << (base >> kLevelBits);
        continue;
      }
      regions_with_refs++;
      EXPECT_TRUE(m.pamt_pair_present(Pfn{base})) << when << ": region " << (base >> kLevelBits);
      uint32_t four_k = 0;
      for (uint64_t i = 0; i < kSptePerPage; i++) {
        const tdx::PamtType t = m.pamt_type(Pfn{base + i});
        four_k += t != tdx::PamtType::Nda && t != tdx::PamtType::Pamt;
      }
      EXPECT_EQ(refs, four_k) << when << ": region " << (base >> kLevelBits);
    }
    EXPECT_EQ(regions_with_refs, m.pamt_pairs()) << when;
  }

  Vm vm;
  Checker ck;
};

// A TD's life at 4K: build, finalize, populate from both vCPUs, convert a
// range to shared and back, tear down.
void td_life(DpamtTd& td) {
  td.build(8);
  for (uint64_t i = 0; i < 64; i++)
    ASSERT_EQ(td.vm.vcpu_access(int(i % 2), kRam + i * 31 * k4K, true), ExitReason::None) << i;
  ASSERT_EQ(td.vm.vcpu_access(0, td.shared(kBuf + 3 * k4K), true), ExitReason::None);
  td.expect_clean("populate");
  ASSERT_EQ(td.vm.set_memory_attributes(kRam, k2M, false), 0);
  ASSERT_EQ(td.vm.vcpu_access(1, td.shared(kRam + 5 * k4K), true), ExitReason::None);
  td.expect_clean("convert to shared");
  ASSERT_EQ(td.vm.set_memory_attributes(kRam, k2M, true), 0);
  ASSERT_EQ(td.vm.vcpu_access(0, kRam + 5 * k4K, true), ExitReason::None);
  td.expect_clean("convert back");
}

TEST(DpamtVm, TdLifeLendsAPairPerRegionAndTakesEveryOneBack) {
  DpamtTd td;
  td_life(td);
  // Control, S-EPT and private pages all sit in regions with pairs.
  EXPECT_GT(td.vm.module()->pamt_pairs(), 0u);
  EXPECT_EQ(td.vm.pool().count(PageOwner::Pamt) % 2, 0u);
  EXPECT_GE(td.vm.pool().count(PageOwner::Pamt), 2 * td.vm.module()->pamt_pairs());
  td.expect_refcounts_match("mid-life");
  td.end_of_life();
  // No DEMOTE at 4K: every pair came from PAMT.ADD and went with PAMT.REMOVE.
  EXPECT_GT(td.calls(tdx::Leaf::PHYMEM_PAMT_ADD), 0u);
  EXPECT_EQ(td.successes(tdx::Leaf::PHYMEM_PAMT_ADD), td.calls(tdx::Leaf::PHYMEM_PAMT_ADD));
  EXPECT_EQ(td.successes(tdx::Leaf::PHYMEM_PAMT_REMOVE), td.calls(tdx::Leaf::PHYMEM_PAMT_ADD));
  EXPECT_EQ(td.calls(tdx::Leaf::PHYMEM_PAMT_REMOVE), td.calls(tdx::Leaf::PHYMEM_PAMT_ADD));
  const auto flow = td.vm.pool().flow(PageOwner::Pamt);
  EXPECT_EQ(flow.allocated, flow.freed);
}

TEST(DpamtVm, RefcountsFollowRemovalsAndConversions) {
  DpamtTd td;
  td.build(0);
  ASSERT_EQ(td.vm.vcpu_access(0, kRam, true), ExitReason::None);
  const Pfn page = td.sept(kRam, 0).pfn;
  ASSERT_TRUE(page.valid());
  const uint32_t before = td.vm.tdx()->pamt_refcount(page);
  EXPECT_GE(before, 1u);
  EXPECT_TRUE(td.vm.module()->pamt_pair_present(page));
  td.expect_refcounts_match("one page");
  // PAGE.REMOVE of the page gives its reference back.
  ASSERT_EQ(td.vm.set_memory_attributes(kRam, k4K, false), 0);
  EXPECT_EQ(td.vm.tdx()->pamt_refcount(page), before - 1);
  td.expect_refcounts_match("page removed");
  td.expect_clean("conversion");
  td.end_of_life();
}

TEST(DpamtVm, HugePagesAugAt2MNeedsNoPairAndDemoteLendsOne) {
  DpamtTd td(dpamt_cfg(true, true, "centralized-rfc-fixed"));
  td.build(0);
  ASSERT_EQ(td.vm.vcpu_access(0, kRam + 7 * k4K, true, PgLevel::k2M), ExitReason::None);
  const auto big = td.sept(kRam, 1);
  ASSERT_EQ(big.state, tdx::SeptState::Mapped);
  EXPECT_FALSE(td.vm.module()->pamt_pair_present(big.pfn));
  EXPECT_EQ(td.vm.tdx()->pamt_refcount(big.pfn), 0u);
  td.expect_refcounts_match("2M AUG");

  // A 4K accept inside a second 2M mapping demotes it: DEMOTE installs the
  // pair KVM hands it, and the range's refcount goes 0 -> 512.
  ASSERT_EQ(td.vm.vcpu_access(1, kRam + k2M + 5 * k4K, true), ExitReason::None);
  EXPECT_EQ(td.vm.tdx()->stats().demotes, 1u);
  EXPECT_EQ(td.successes(tdx::Leaf::MEM_PAGE_DEMOTE), 1u);
  EXPECT_EQ(td.vm.tdx()->stats().demote_pamt_pairs, 1u);
  const Pfn range = td.sept(kRam + k2M, 0).pfn;
  ASSERT_TRUE(range.valid());
  EXPECT_TRUE(td.vm.module()->pamt_pair_present(range));
  EXPECT_EQ(td.vm.tdx()->pamt_refcount(range), uint32_t(kSptePerPage));
  td.expect_refcounts_match("demote");
  td.expect_clean("demote");

  // Converting part of the demoted range removes 4K pages one by one.
  ASSERT_EQ(td.vm.set_memory_attributes(kRam + k2M + 64 * k4K, 8 * k4K, false), 0);
  EXPECT_EQ(td.vm.tdx()->pamt_refcount(range), uint32_t(kSptePerPage - 8));
  td.expect_refcounts_match("conversion");
  td.expect_clean("conversion");
  td.end_of_life();
  // The DEMOTE pair went with a PAMT.REMOVE like the ADDed ones.
  EXPECT_EQ(td.successes(tdx::Leaf::PHYMEM_PAMT_REMOVE),
            td.successes(tdx::Leaf::PHYMEM_PAMT_ADD) + td.vm.tdx()->stats().demote_pamt_pairs);
}

TEST(DpamtVm, HugePagesTdLifeIsClean) {
  DpamtTd td(dpamt_cfg(true, true, "centralized-rfc-fixed"));
  td.build(4);
  for (uint64_t i = 0; i < 4; i++)
    ASSERT_EQ(td.vm.vcpu_access(int(i % 2), kRam + i * k2M + 9 * k4K, true, i % 2 ? PgLevel::k4K : PgLevel::k2M),
              ExitReason::None);
  // A conversion cutting two 2M mappings splits head and tail.
  ASSERT_EQ(td.vm.set_memory_attributes(kRam + 2 * k2M - 8 * k4K, 16 * k4K, false), 0);
  EXPECT_GE(td.vm.tdx()->stats().demotes, 2u);
  td.expect_refcounts_match("conversion");
  td.expect_clean("conversion");
  ASSERT_EQ(td.vm.punch_hole(kRam + 3 * k2M, k2M), 0);
  td.expect_refcounts_match("punch");
  td.expect_clean("punch");
  td.end_of_life();
  EXPECT_GT(td.vm.tdx()->stats().demote_pamt_pairs, 0u);
}

TEST(DpamtVm, OffLendsNothing) {
  DpamtTd td(dpamt_cfg(false));
  td_life(td);
  td.end_of_life();
  EXPECT_EQ(td.calls(tdx::Leaf::PHYMEM_PAMT_ADD), 0u);
  EXPECT_EQ(td.calls(tdx::Leaf::PHYMEM_PAMT_REMOVE), 0u);
  EXPECT_EQ(td.vm.pool().flow(PageOwner::Pamt).allocated, 0u);
  // The hook exists but has nothing to do.
  EXPECT_EQ(td.vm.tdx()->topup_external_cache(0, kRootMaxLevel), 0);
  EXPECT_EQ(td.vm.pool().flow(PageOwner::Pamt).allocated, 0u);
}

TEST(DpamtVm, FailingPamtTopUpAtCreationFailsBeforeTheSeamcall) {
  DpamtTd td;
  // The TDR is allocated; the top-up for its region's pair is not.
  td.vm.pool().fail_after(1);
  EXPECT_EQ(td.vm.create(), -ENOMEM);
  EXPECT_EQ(td.calls(tdx::Leaf::MNG_CREATE), 0u);
  EXPECT_EQ(td.calls(tdx::Leaf::PHYMEM_PAMT_ADD), 0u);
  EXPECT_EQ(td.vm.pool().flow(PageOwner::Pamt).allocated, 0u);
  EXPECT_GT(td.vm.pool().failed_allocs(), 0u);
  td.vm.pool().fail_after(-1);
  td.end_of_life();
}

// Every allocation of a short life made to fail in turn (and all after it):
// the operation that meets it fails with ENOMEM, and the teardown still
// takes every page and every pair back. Past the allocations the life cannot
// do without (caches fill beyond their minimum when they can) it succeeds.
TEST(DpamtVm, EveryFailingAllocationLeavesNothingBehind) {
  const auto life = [](DpamtTd& td) -> int {
    if (int r = td.vm.create()) return r;
    if (int r = td.vm.add_memslot(0, kRam, kRamSize, kMemGuestMemfd)) return r;
    if (int r = td.vm.init_mem_region(kRam, 4)) return r;
    if (int r = td.vm.finalize()) return r;
    if (int r = td.vm.set_memory_attributes(kRam, kRamSize, true)) return r;
    for (uint64_t i = 0; i < 16; i++) {
      const ExitReason e = td.vm.vcpu_access(int(i % 2), kRam + i * 131 * k4K, true);
      if (e != ExitReason::None) return e == ExitReason::NoMemory ? -ENOMEM : -EIO;
    }
    return td.vm.set_memory_attributes(kRam, 4 * k4K, false);
  };
  uint64_t failed_runs = 0, successes_in_a_row = 0, pamt_failures = 0;
  for (uint64_t n = 0; successes_in_a_row < 16; n++) {
    DpamtTd td;
    td.vm.pool().fail_after(int64_t(n));
    const int r = life(td);
    // The failing allocation was the PAMT cache's when the top-up got fewer
    // pages than it asked for (it always asks for a multiple of a pair).
    pamt_failures += r != 0 && td.vm.pool().count(PageOwner::Pamt) % 2 != 0;
    td.vm.pool().fail_after(-1);
    successes_in_a_row = r == 0 ? successes_in_a_row + 1 : 0;
    if (r != 0) {
      failed_runs++;
      EXPECT_EQ(r, -ENOMEM) << "allocation " << n;
    }
    EXPECT_EQ(td.vm.bugs().total_hits(), 0u) << "allocation " << n;
    td.end_of_life();
    if (HasFailure()) {
      ADD_FAILURE() << "first failure with allocation " << n << " failing";
      break;
    }
  }
  EXPECT_GT(failed_runs, 100u);
  EXPECT_GT(pamt_failures, 0u);
}

// BUSY injected at every SEAMCALL of a short life, one at a time: a map or
// link that fails gives its reference back (the fault retries), and a BUSY
// PAMT.ADD or PAMT.REMOVE is tried once more; the teardown still takes
// every pair back.
TEST(DpamtVm, BusyAtEverySeamcallKeepsTheRefcountsExact) {
  const auto life = [](DpamtTd& td) {
    if (td.vm.create() || td.vm.add_memslot(0, kRam, kRamSize, kMemGuestMemfd) ||
        td.vm.init_mem_region(kRam, 2) || td.vm.finalize() || td.vm.set_memory_attributes(kRam, kRamSize, true))
      return;
    for (uint64_t i = 0; i < 6; i++) td.vm.vcpu_access(int(i % 2), kRam + i * 200 * k4K, true);
    td.vm.set_memory_attributes(kRam, 2 * k4K, false);
  };
  uint64_t points = 0;
  {
    FaultInjector inj;
    DpamtTd td(dpamt_cfg(), &inj);
    life(td);
    points = inj.seen(InjectPoint::Seamcall);
    td.end_of_life();
  }
  ASSERT_GT(points, 20u);
  uint64_t pamt_busy = 0;
  for (uint64_t n = 1; n <= points && !HasFailure(); n++) {
    FaultInjector inj;
    inj.arm(InjectPoint::Seamcall, n, Injection::Busy);
    DpamtTd td(dpamt_cfg(), &inj);
    life(td);
    const std::string what = "BUSY at SEAMCALL #" + std::to_string(n);
    if (!td.vm.bugs().bugged()) td.expect_refcounts_match(what.c_str());
    for (tdx::Leaf l : {tdx::Leaf::PHYMEM_PAMT_ADD, tdx::Leaf::PHYMEM_PAMT_REMOVE, tdx::Leaf::MEM_PAGE_AUG,
                        tdx::Leaf::MEM_PAGE_ADD, tdx::Leaf::MEM_SEPT_ADD}) {
      if (td.successes(l) == td.calls(l)) continue;
      EXPECT_FALSE(td.vm.bugs().bugged()) << what << " in " << tdx::leaf_name(l);
      pamt_busy += l == tdx::Leaf::PHYMEM_PAMT_ADD || l == tdx::Leaf::PHYMEM_PAMT_REMOVE;
    }
    td.vm.destroy();
    td.ck.check_end_of_life();
    EXPECT_TRUE(td.ck.ok()) << what << "\n" << td.ck.describe();
    if (!td.vm.bugs().bugged()) {
      EXPECT_EQ(td.vm.module()->pamt_pairs(), 0u) << what;
      EXPECT_EQ(td.vm.pool().in_use(), 0u) << what;
    }
  }
  EXPECT_GT(pamt_busy, 0u);
}

// vCPUs faulting private pages (two of them into the same fresh regions)
// while the VMM converts some back, under the deterministic engine: the
// pamt_lock waits by leaving the runnable set, and every interleaving tried
// ends clean with all pairs back.
void interleaved(const VmConfig& cfg, uint64_t seed) {
  sync::RcuThread rcu_thread;
  DpamtTd td(cfg);
  explore::RandomStrategy strategy(seed, 0.0);
  sync::DetEngine engine(strategy, {});
  engine.spawn("setup", [&] { td.build(0); });
  ASSERT_TRUE(engine.run()) << engine.abort_reason();
  ASSERT_FALSE(testing::Test::HasFatalFailure());
  td.vm.set_vcpus_threaded(true);
  for (int v = 0; v < 2; v++) {
    engine.spawn("vcpu" + std::to_string(v), [&td, v] {
      // The first four pages may be converted under the vCPU: then the
      // guest's access exits to userspace instead.
      for (uint64_t i = 0; i < 6; i++) {
        const ExitReason e = td.vm.vcpu_access(v, kRam + k2M + (i * 2 + v) * k4K, true);
        EXPECT_TRUE(e == ExitReason::None || (i < 2 && e == ExitReason::MemoryFault)) << exit_reason_name(e);
      }
      td.vm.vcpu_exit(v);
    });
  }
  engine.spawn("vmm", [&] { EXPECT_EQ(td.vm.set_memory_attributes(kRam + k2M, 4 * k4K, false), 0); });
  ASSERT_TRUE(engine.run()) << engine.abort_reason();
  td.vm.set_vcpus_threaded(false);
  td.expect_refcounts_match("threads");
  td.expect_clean("threads");
  engine.spawn("teardown", [&] { td.vm.destroy(); });
  ASSERT_TRUE(engine.run()) << engine.abort_reason();
  td.ck.check_end_of_life();
  EXPECT_TRUE(td.ck.ok()) << td.ck.describe();
  EXPECT_EQ(td.vm.module()->pamt_pairs(), 0u);
  EXPECT_EQ(td.vm.pool().count(PageOwner::Pamt), 0u);
  EXPECT_GT(td.calls(tdx::Leaf::PHYMEM_PAMT_ADD), 0u);
}

TEST(DpamtVm, InterleavedFaultsAndConversionsUnderTheDeterministicEngine) {
  for (uint64_t seed = 1; seed <= 12 && !HasFailure(); seed++) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    interleaved(dpamt_cfg(), seed);
    interleaved(dpamt_cfg(true, true, "centralized-rfc-fixed"), seed);
  }
}

}  // namespace
}  // namespace mirrormmu::test
