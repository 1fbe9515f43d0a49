// SPDX-License-Identifier: MIT
// Demotion under failure: a non-BUSY error, and BUSY, at every SEAMCALL of
// the path a 4K accept inside a PENDING 2M mapping takes (2M AUG, the
// accept's exit, BLOCK, TRACK, DEMOTE), for each design that can split.
// Whatever fails, teardown still gives every page back, and the sites that
// fire show how each design handles the error: the split-hook RFC bugs the
// VM in the MMU core on top of TDX's own TDX_BUG_ON (Yan and Rick's
// disagreement), the centralized layout through handle_changed_spte().
#include <gtest/gtest.h>

#include "check/checker.h"
#include "tdx/status.h"
#include "vm/vm.h"

namespace mirrormmu::test {
namespace {

constexpr uint64_t kRam = 1ull << 32;
constexpr uint64_t k2M = 2ull << 20;

struct DemoteRun {
  uint64_t window_first = 0, window_last = 0;  // SEAMCALL ordinals of the demotion path
  bool bugged = false;
  uint64_t demote_bug = 0, split_hook_bug = 0, set_hook_bug = 0;
  bool checker_ok = false;
  uint64_t leaked = 0, pool_violations = 0;
  uint64_t reclaim_warns = 0;
  std::string detail;
};

// Boots a huge-page TD, maps one 2M page, then has the guest accept 4K
// inside a second, still PENDING, 2M mapping; `arm(n)` picks the ordinal
// (relative to the start of that access) that fails with `what`.
DemoteRun demote_with(const std::string& design, uint64_t nth, Injection what) {
  FaultInjector inj;
  VmConfig c;
  c.nr_vcpus = 2;
  c.pool_pages = 1u << 14;
  c.design = design;
  c.huge_pages = true;
  DemoteRun out;
  {
    Vm vm(c, &inj);
    CheckerOptions o;
    o.bug_sites_are_failures = false;
    Checker ck(vm, o);
    EXPECT_EQ(vm.create(), 0);
    EXPECT_EQ(vm.add_memslot(0, kRam, 2 * k2M, kMemGuestMemfd), 0);
    EXPECT_EQ(vm.finalize(), 0);
    EXPECT_EQ(vm.set_memory_attributes(kRam, 2 * k2M, true), 0);
    EXPECT_EQ(vm.vcpu_access(0, kRam, true, PgLevel::k2M), ExitReason::None);
    out.window_first = inj.seen(InjectPoint::Seamcall) + 1;
    if (nth) inj.arm(InjectPoint::Seamcall, out.window_first + nth - 1, what);
    vm.vcpu_access(1, kRam + k2M + 0x5000, true);
    out.window_last = inj.seen(InjectPoint::Seamcall);
    ck.check("4K accept");
    vm.destroy();
    ck.check_end_of_life();
    out.bugged = vm.bugs().bugged();
    out.demote_bug = vm.bugs().hits(Site::tdh_mem_page_demote) + vm.bugs().hits(Site::tdh_mem_range_block) +
                     vm.bugs().hits(Site::tdh_mem_track);
    out.split_hook_bug = vm.bugs().hits(Site::split_external_spt_failed);
    out.set_hook_bug = vm.bugs().hits(Site::set_external_spte_failed);
    out.checker_ok = ck.ok();
    out.leaked = ck.pages_leaked();
    out.reclaim_warns = vm.bugs().hits(Site::tdh_phymem_page_reclaim);
    out.pool_violations = vm.pool().violations();
    out.detail = ck.describe();
  }
  return out;
}

class DemoteInjection : public ::testing::TestWithParam<std::string> {};

TEST_P(DemoteInjection, ErrorAnywhereOnThePathBugsTheVmAndTearsDownClean) {
  const DemoteRun clean = demote_with(GetParam(), 0, Injection::None);
  ASSERT_TRUE(clean.checker_ok) << clean.detail;
  ASSERT_FALSE(clean.bugged);
  const uint64_t n = clean.window_last - clean.window_first + 1;
  ASSERT_GE(n, 4u);  // at least the 2M AUG, BLOCK, TRACK, DEMOTE
  uint64_t demotes_failed = 0;
  for (uint64_t i = 1; i <= n; i++) {
    const DemoteRun r = demote_with(GetParam(), i, Injection::Error);
    const std::string what = "error at SEAMCALL #" + std::to_string(i) + " of the 4K accept";
    EXPECT_EQ(r.pool_violations, 0u) << what;
    // A finding, not a fault of the test: the merged free_external_spt has no
    // notion of a table whose S-EPT page the module never took. After a failed
    // BLOCK/TRACK/DEMOTE it RECLAIMs that page at teardown, the module refuses
    // (WARN), and TDX leaks it on purpose although it is plain host memory.
    // The RFC-era layouts here skip the reclaim of a never-donated page.
    const bool leaks_failed_split = GetParam() == "hugepage-v5" && r.demote_bug;
    if (leaks_failed_split) {
      EXPECT_EQ(r.leaked, 1u) << what << "\n" << r.detail;
      EXPECT_GE(r.reclaim_warns, 1u) << what;
      EXPECT_NE(r.detail.find("still S-EPT page after teardown"), std::string::npos) << r.detail;
    } else {
      EXPECT_TRUE(r.checker_ok) << what << "\n" << r.detail;
      EXPECT_EQ(r.leaked, 0u) << what;
    }
    if (!r.demote_bug) continue;
    // The split's own SEAMCALLs failed: TDX_BUG_ON, and then the MMU side.
    demotes_failed++;
    EXPECT_TRUE(r.bugged) << what;
    if (GetParam() == "split-hook") {
      EXPECT_EQ(r.split_hook_bug, 1u) << what;
    } else {
      EXPECT_GE(r.set_hook_bug, 1u) << what;
    }
  }
  EXPECT_EQ(demotes_failed, 3u);  // BLOCK, TRACK, DEMOTE
}

TEST_P(DemoteInjection, BusyAnywhereOnThePathIsRetried) {
  const DemoteRun clean = demote_with(GetParam(), 0, Injection::None);
  for (uint64_t i = 1; i <= clean.window_last - clean.window_first + 1; i++) {
    const DemoteRun r = demote_with(GetParam(), i, Injection::Busy);
    const std::string what = "BUSY at SEAMCALL #" + std::to_string(i) + " of the 4K accept";
    EXPECT_FALSE(r.bugged) << what;
    EXPECT_TRUE(r.checker_ok) << what << "\n" << r.detail;
    EXPECT_EQ(r.leaked, 0u) << what;
  }
}

INSTANTIATE_TEST_SUITE_P(Designs, DemoteInjection, ::testing::Values("hugepage-v5", "centralized-rfc-fixed", "split-hook", "single-hook"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

}  // namespace
}  // namespace mirrormmu::test
