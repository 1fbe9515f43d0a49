// SPDX-License-Identifier: MIT
// Every failure the real system can produce, at every point a small TD's
// life reaches it: a SEAMCALL returning BUSY, a SEAMCALL failing outright,
// a cache top-up failing, the host running out of memory. Whatever happens,
// the trees stay consistent (or the VM is bugged), and teardown gives back
// every page except those the TDX module still owns after a failed reclaim.
#include <gtest/gtest.h>

#include "tdx/status.h"
#include "workload/runner.h"

namespace mirrormmu::test {
namespace {

WorkloadConfig tiny(FaultInjector* inj) {
  WorkloadConfig c;
  c.bug_sites_are_failures = inj == nullptr;
  c.name = "td-tiny";
  c.vcpus = 2;
  c.inject = inj;
  return c;
}

// Points reached by one clean run.
uint64_t count_points(InjectPoint p) {
  FaultInjector inj;
  RunOutcome r = run_workload(tiny(&inj));
  EXPECT_TRUE(r.result.ok);
  EXPECT_EQ(r.vm->bugs().total_hits(), 0u);
  return inj.seen(p);
}

// Which leaf answered with the injected status (the model counts statuses).
std::vector<tdx::Leaf> leaves_with(const RunOutcome& r, tdx::Status base) {
  std::vector<tdx::Leaf> out;
  for (size_t i = 0; i < tdx::kLeafCount; i++) {
    const tdx::TdxModule::LeafStats calls = r.vm->module()->stats(static_cast<tdx::Leaf>(i));
    for (const auto& [st, n] : calls.by_status)
      if (tdx::status_base(st) == base) out.push_back(static_cast<tdx::Leaf>(i));
  }
  return out;
}

void expect_consistent(const RunOutcome& r, const std::string& what) {
  EXPECT_TRUE(r.checker->ok()) << what << "\n" << r.checker->describe();
  EXPECT_EQ(r.checker->pages_leaked(), 0u) << what;
  EXPECT_EQ(r.vm->pool().violations(), 0u) << what;
  // Pages are kept by the module only after a failed reclaim, and a reclaim
  // fails only on a bug path.
  if (r.checker->pages_leaked_on_purpose()) {
    EXPECT_TRUE(r.vm->bugs().bugged() || r.vm->bugs().hits(Site::tdh_phymem_page_reclaim)) << what;
  }
}

TEST(FaultInjection, BusyAtEverySeamcall) {
  const uint64_t n = count_points(InjectPoint::Seamcall);
  ASSERT_GT(n, 40u);
  for (uint64_t i = 1; i <= n; i++) {
    FaultInjector inj;
    inj.arm(InjectPoint::Seamcall, i, Injection::Busy);
    RunOutcome r = run_workload(tiny(&inj));
    const std::string what = "BUSY at SEAMCALL #" + std::to_string(i);
    ASSERT_EQ(inj.fired(), 1u) << what;
    expect_consistent(r, what);
    const auto busy = leaves_with(r, tdx::TDX_OPERAND_BUSY);
    ASSERT_EQ(busy.size(), 1u) << what;
    // BUSY is an expected answer everywhere KVM maps (retry the fault) or
    // zaps (kick vCPUs, retry once). Only the reclaim and WBINVD paths, which
    // never expect contention, treat it as a bug.
    const bool tolerated = busy[0] != tdx::Leaf::PHYMEM_PAGE_RECLAIM && busy[0] != tdx::Leaf::PHYMEM_PAGE_WBINVD;
    if (tolerated) {
      EXPECT_FALSE(r.vm->bugs().bugged()) << what << " in " << tdx::leaf_name(busy[0]);
      EXPECT_EQ(r.checker->pages_leaked_on_purpose(), 0u) << what;
    }
  }
}

TEST(FaultInjection, ErrorAtEverySeamcallBugsTheVmAndStillTearsDown) {
  const uint64_t n = count_points(InjectPoint::Seamcall);
  for (uint64_t i = 1; i <= n; i++) {
    FaultInjector inj;
    inj.arm(InjectPoint::Seamcall, i, Injection::Error);
    RunOutcome r = run_workload(tiny(&inj));
    const std::string what = "error at SEAMCALL #" + std::to_string(i);
    ASSERT_EQ(inj.fired(), 1u) << what;
    expect_consistent(r, what);
    const auto failed = leaves_with(r, tdx::TDX_OPERAND_INVALID);
    ASSERT_EQ(failed.size(), 1u) << what;
    // A failed reclaim only WARNs: the page is leaked on purpose, and so is
    // the TDR, which the module will not release while it still parents a
    // page. Every other unexpected error kills the VM.
    if (failed[0] == tdx::Leaf::PHYMEM_PAGE_RECLAIM) {
      EXPECT_FALSE(r.vm->bugs().bugged()) << what;
      EXPECT_GE(r.checker->pages_leaked_on_purpose(), 1u) << what;
      EXPECT_LE(r.checker->pages_leaked_on_purpose(), 2u) << what;
    } else {
      EXPECT_TRUE(r.vm->bugs().bugged()) << what << " in " << tdx::leaf_name(failed[0]);
    }
  }
}

TEST(FaultInjection, CacheTopupFailureAtEveryPoint) {
  const uint64_t n = count_points(InjectPoint::CacheTopup);
  ASSERT_GT(n, 0u);
  for (uint64_t i = 1; i <= n; i++) {
    FaultInjector inj;
    inj.arm(InjectPoint::CacheTopup, i, Injection::NoMem);
    RunOutcome r = run_workload(tiny(&inj));
    const std::string what = "-ENOMEM at top-up #" + std::to_string(i);
    ASSERT_EQ(inj.fired(), 1u) << what;
    expect_consistent(r, what);
    EXPECT_FALSE(r.vm->bugs().bugged()) << what;
    EXPECT_EQ(r.vm->bugs().total_hits(), 0u) << what;
  }
}

// The host itself runs out of memory: every allocation after the n-th fails
// (page tables, S-EPT pages, guest memory, control pages alike).
TEST(FaultInjection, HostOutOfMemoryAfterEveryAllocation) {
  int runs = 0;
  for (int64_t n = 0;; n++, runs++) {
    WorkloadConfig c = tiny(nullptr);
    c.pool_fail_after = n;
    RunOutcome r = run_workload(c);
    const std::string what = "allocations fail after #" + std::to_string(n);
    expect_consistent(r, what);
    EXPECT_FALSE(r.vm->bugs().bugged()) << what;
    if (r.vm->pool().failed_allocs() == 0) break;  // the whole life fit under the limit
    ASSERT_LT(n, 100000) << "the workload never stops allocating";
  }
  EXPECT_GT(runs, 50);
}

}  // namespace
}  // namespace mirrormmu::test
