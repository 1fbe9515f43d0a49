// SPDX-License-Identifier: MIT
// TouchedRanges: widened to 2M regions, merged, and the per-thread note of
// the last region added (which keeps a fault's 512 changes off the lock)
// never hides a change made after a take().
#include <gtest/gtest.h>

#include <memory>

#include "check/touched.h"

namespace mirrormmu::test {
namespace {

TEST(TouchedRanges, WidensToRegionsAndMerges) {
  TouchedRanges t;
  t.add(Gfn{0x205}, 1);
  t.add(Gfn{0x3ff}, 2);  // runs into the next region
  t.add(Gfn{0x1000}, 0);  // an empty range still names its region
  const auto r = t.take();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].start, Gfn{0x200});
  EXPECT_EQ(r[0].end, Gfn{0x600});
  EXPECT_EQ(r[1].start, Gfn{0x1000});
  EXPECT_EQ(r[1].end, Gfn{0x1200});
  EXPECT_TRUE(t.take().empty());
}

TEST(TouchedRanges, TheSameRegionAfterATakeIsRecordedAgain) {
  TouchedRanges t;
  t.add(Gfn{0x400}, 1);
  t.add(Gfn{0x401}, 1);  // deduplicated against the note
  EXPECT_EQ(t.take().size(), 1u);
  // The note belongs to the epoch before the take: the same region again
  // must be in the next take, or the change would go unchecked.
  t.add(Gfn{0x402}, 1);
  const auto r = t.take();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].start, Gfn{0x400});
}

TEST(TouchedRanges, ANewSetAtADeadOnesAddressIsNotMistakenForIt) {
  auto a = std::make_unique<TouchedRanges>();
  a->add(Gfn{0x800}, 1);
  const void* where = a.get();
  a.reset();
  auto b = std::make_unique<TouchedRanges>();
  b->add(Gfn{0x800}, 1);
  // Whether or not b reuses a's storage, its first add is recorded.
  EXPECT_EQ(b->take().size(), 1u) << (where == b.get() ? "same address" : "other address");
}

}  // namespace
}  // namespace mirrormmu::test
