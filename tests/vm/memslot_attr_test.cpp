// SPDX-License-Identifier: MIT
// A memslot's private attribute, a bit per gfn: set and cleared one gfn at a
// time, and read a 2M or 1G block at a time by the fault path's
// KVM_LPAGE_MIXED_FLAG question (a word per 64 gfns when the slot starts on
// a word boundary, a bit at a time when it does not).
#include <gtest/gtest.h>

#include <memory>

#include "vm/vm.h"

namespace mirrormmu {
namespace {

std::unique_ptr<Memslot> slot_at(uint64_t base, uint64_t npages) {
  auto s = std::make_unique<Memslot>();
  s->base_gfn = Gfn{base};
  s->npages = npages;
  s->private_bits.assign((npages + 63) / 64, 0);
  return s;
}

void set_range(Memslot& s, uint64_t first, uint64_t n, bool p) {
  for (uint64_t g = first; g < first + n; g++) s.set_private(Gfn{g}, p);
}

TEST(MemslotAttributes, BitsAreSetAndClearedOneGfnAtATime) {
  const auto sp = slot_at(0x100000, 4096);
  Memslot& s = *sp;
  s.set_private(Gfn{0x100000 + 70}, true);
  EXPECT_TRUE(s.is_private(Gfn{0x100000 + 70}));
  EXPECT_FALSE(s.is_private(Gfn{0x100000 + 69}));
  EXPECT_FALSE(s.is_private(Gfn{0x100000 + 71}));
  s.set_private(Gfn{0x100000 + 71}, true);
  s.set_private(Gfn{0x100000 + 70}, false);
  EXPECT_FALSE(s.peek_private(Gfn{0x100000 + 70}));
  EXPECT_TRUE(s.peek_private(Gfn{0x100000 + 71}));
}

// Both ways of answering agree: one gfn different anywhere in the block
// (first, inside a word, last) makes it mixed.
void expect_mixed_blocks_seen(uint64_t base) {
  for (const uint64_t odd : {0ull, 63ull, 64ull, 300ull, 511ull}) {
    const auto sp = slot_at(base, 2048);
    Memslot& s = *sp;
    const uint64_t block = (base + 511) & ~511ull;  // first whole 2M block in the slot
    EXPECT_TRUE(s.hugepage_uniform(Gfn{block}, PgLevel::k2M));
    set_range(s, block, 512, true);
    EXPECT_TRUE(s.hugepage_uniform(Gfn{block + 5}, PgLevel::k2M));
    s.set_private(Gfn{block + odd}, false);
    EXPECT_FALSE(s.hugepage_uniform(Gfn{block}, PgLevel::k2M)) << "base " << base << ", shared gfn at +" << odd;
    s.set_private(Gfn{block + odd}, true);
    s.set_private(Gfn{block + 512}, false);  // the next block's does not matter
    EXPECT_TRUE(s.hugepage_uniform(Gfn{block}, PgLevel::k2M));
  }
}

TEST(MemslotAttributes, MixedBlocksAreSeenWordAligned) { expect_mixed_blocks_seen(0x200000); }
TEST(MemslotAttributes, MixedBlocksAreSeenAtAnOddBase) { expect_mixed_blocks_seen(0x200001); }

TEST(MemslotAttributes, BlocksOutsideTheSlotAreNeverUniform) {
  const auto sp = slot_at(0x200000, 1024);
  Memslot& s = *sp;
  EXPECT_FALSE(s.hugepage_uniform(Gfn{0x200000 + 1024}, PgLevel::k2M));
  EXPECT_FALSE(s.hugepage_uniform(Gfn{0x200000}, PgLevel::k1G));
}

}  // namespace
}  // namespace mirrormmu
