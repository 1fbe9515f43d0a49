// SPDX-License-Identifier: MIT
// When an incremental checker walks the whole guest: once the incremental
// passes since the last full pass have looked at more entries than that pass
// did (at least 4096), and not before. A checker whose full pass never came
// due would let a corruption nobody reported live to the end of the run; one
// that came due too often costs a walk of the guest per few operations.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>

#include "check/checker.h"
#include "vm/vm.h"

namespace mirrormmu::test {
namespace {

constexpr uint64_t kRamGpa = 1ull << 32;
constexpr uint64_t kChunk = 2ull << 20;
constexpr uint64_t kChunks = 40;
constexpr uint64_t kFloor = 4096;  // the fewest entries that make a full pass due

TEST(FullPassDue, ComesOnceTheIncrementalPassesOutwalkTheLastFullPass) {
  VmConfig cfg;
  cfg.type = VmType::Td;
  cfg.pool_pages = 1ull << 16;
  cfg.nr_vcpus = 1;
  Vm vm(cfg);
  ASSERT_EQ(vm.create(), 0);
  CheckerOptions opts;
  opts.mode = CheckMode::Incremental;
  Checker ck(vm, opts);
  ASSERT_EQ(vm.add_memslot(0, kRamGpa, kChunks * kChunk, kMemGuestMemfd), 0);
  ASSERT_EQ(vm.finalize(), 0);
  ASSERT_EQ(vm.set_memory_attributes(kRamGpa, kChunks * kChunk, true), 0);
  ASSERT_EQ(ck.check("setup"), 0u);
  ASSERT_GE(ck.full_checks(), 1u) << "the first check is a full one";

  uint64_t last_full_entries = 0;  // what the last full pass looked at
  uint64_t since = 0;              // what the incremental passes looked at since
  uint64_t full_passes = 0;
  for (uint64_t c = 0; c < kChunks; c++) {
    for (uint64_t p = 0; p < kChunk / kPageSize; p++)
      ASSERT_EQ(vm.vcpu_access(0, kRamGpa + c * kChunk + p * kPageSize, true), ExitReason::None);
    const uint64_t fulls = ck.full_checks(), entries = ck.entries_checked();
    ASSERT_EQ(ck.check("populate a chunk"), 0u);
    const uint64_t walked = ck.entries_checked() - entries;
    const bool due = since > std::max(last_full_entries, kFloor);
    if (ck.full_checks() != fulls) {
      EXPECT_TRUE(due) << "chunk " << c << ": a full pass after " << since << " incremental entries, last full "
                       << last_full_entries;
      // The whole guest: every chunk so far, at least one entry per page.
      EXPECT_GE(walked, (c + 1) * (kChunk / kPageSize));
      last_full_entries = walked;
      since = 0;
      full_passes++;
    } else {
      EXPECT_FALSE(due) << "chunk " << c << ": no full pass after " << since << " incremental entries, last full "
                        << last_full_entries;
      // One 2M region: its 512 leaves, the table holding them and, the
      // first time, the tables above that one.
      EXPECT_LE(walked, kChunk / kPageSize + 4);
      since += walked;
    }
  }
  // Chunks of 513 entries: due after 8 (4104 > 4096), so the pass after
  // the 9th chunk walks 9; due again after 10 more, walking 20; the next
  // would need 21 more than the 40 there are. Fewer means the pass stopped
  // coming, more that it comes early.
  EXPECT_EQ(full_passes, 2u);
  vm.destroy();
  EXPECT_EQ(ck.check_full("after teardown"), 0u);
}

}  // namespace
}  // namespace mirrormmu::test
