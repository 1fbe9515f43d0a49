// SPDX-License-Identifier: MIT
// Incremental checking against full checking on bugs that reach the tree
// through the code's own paths: each planted bug (a design's known flaw
// under an injected BUSY, and what-if variants that drop a write-back, a
// kick or a TLB flush) must fail the run in both modes, on the same
// invariant after the same operation. And a clean run stays clean while its
// incremental checks really are incremental.
#include <gtest/gtest.h>

#include <string>

#include "tdx/status.h"
#include "workload/runner.h"

namespace mirrormmu::test {
namespace {

struct Planted {
  const char* name;
  void (*apply)(WorkloadConfig&);
};

WorkloadConfig small_td() {
  WorkloadConfig wc;
  wc.gib = 0.05;
  wc.threads = false;  // inline: the two modes see the same operations
  return wc;
}

const Planted kPlanted[] = {
    {"stats counted before a refused map (centralized-rfc, AUG BUSY)",
     [](WorkloadConfig& wc) {
       wc.design = "centralized-rfc";
       const tdx::Status busy = tdx::TDX_OPERAND_BUSY | static_cast<uint32_t>(tdx::Operand::SEPT_TREE);
       wc.seamcall_injections.push_back({{static_cast<uint32_t>(tdx::Leaf::MEM_PAGE_AUG), 3, busy}, "AUG#3=BUSY"});
     }},
    {"no WBINVD after REMOVE", [](WorkloadConfig& wc) { wc.what_if.no_wbinvd = true; }},
    {"no kick after TRACK", [](WorkloadConfig& wc) { wc.what_if.no_kick_after_track = true; }},
    {"no TLB flush after an unmap", [](WorkloadConfig& wc) { wc.what_if.no_flush_after_unmap = true; }},
};

struct FirstFailure {
  std::string invariant;
  uint64_t op = 0;
};

FirstFailure run(WorkloadConfig wc, CheckMode mode) {
  wc.check_mode = mode;
  RunOutcome out = run_workload(wc);
  EXPECT_TRUE(out.checker);
  if (!out.checker || out.checker->ok()) return {};
  const Violation& v = out.checker->violations().front();
  return {v.invariant, v.op_index};
}

TEST(IncrementalCheck, FindsEachPlantedBugWhereTheFullCheckDoes) {
  for (const Planted& p : kPlanted) {
    WorkloadConfig wc = small_td();
    p.apply(wc);
    const FirstFailure full = run(wc, CheckMode::Full);
    const FirstFailure inc = run(wc, CheckMode::Incremental);
    EXPECT_FALSE(full.invariant.empty()) << p.name << ": the full check found nothing";
    EXPECT_EQ(inc.invariant, full.invariant) << p.name;
    EXPECT_EQ(inc.op, full.op) << p.name;
  }
}

TEST(IncrementalCheck, CleanRunStaysCleanAndLooksAtLessThanTheGuest) {
  WorkloadConfig wc = small_td();
  wc.gib = 0.25;
  wc.check_mode = CheckMode::Incremental;
  RunOutcome out = run_workload(wc);
  ASSERT_TRUE(out.checker);
  EXPECT_TRUE(out.checker->ok()) << out.checker->describe();
  // Several hundred operations, a handful of full passes (as the tree grows,
  // and at the end).
  EXPECT_GT(out.checker->checks_run(), 100u);
  EXPECT_LT(out.checker->full_checks() * 10, out.checker->checks_run());
  EXPECT_GE(out.checker->full_checks(), 2u);
}

}  // namespace
}  // namespace mirrormmu::test
