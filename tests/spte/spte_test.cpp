// SPDX-License-Identifier: MIT
#include <gtest/gtest.h>

#include "spte/spte.h"

namespace mirrormmu::test {
namespace {

using namespace spte;

TEST(Spte, SpecialValuesAreNeverPresent) {
  EXPECT_FALSE(is_shadow_present(kNonPresent));
  EXPECT_FALSE(is_shadow_present(kFrozen));
  EXPECT_TRUE(is_frozen(kFrozen));
  EXPECT_FALSE(is_frozen(kNonPresent));
  EXPECT_EQ(kNonPresent, 1ull << 63);
  EXPECT_EQ(kFrozen & ~kNonPresent, 0x5a0u);
  // The merged value carries the EPT Accessed bit: only presence may be
  // asked of a frozen SPTE.
  EXPECT_TRUE(kFrozen & kAccessed);
  EXPECT_FALSE(has_volatile_bits(kFrozen));
  EXPECT_EQ(kind_of(kFrozen, PgLevel::k4K, kMmioValueTdx), Kind::Frozen);
  EXPECT_EQ(kind_of(kNonPresent, PgLevel::k4K, kMmioValueTdx), Kind::NonPresent);
}

TEST(Spte, LeafAndNonLeafEncoding) {
  const uint64_t leaf = make_leaf(Pfn{0x1234}, PgLevel::k4K);
  EXPECT_TRUE(is_shadow_present(leaf));
  EXPECT_TRUE(is_leaf(leaf, PgLevel::k4K));
  EXPECT_FALSE(is_large(leaf));
  EXPECT_EQ(to_pfn(leaf), Pfn{0x1234});
  EXPECT_EQ(leaf & kRwx, kRwx);
  const uint64_t huge = make_leaf(Pfn{0x200}, PgLevel::k2M);
  EXPECT_TRUE(is_large(huge));
  EXPECT_TRUE(is_leaf(huge, PgLevel::k2M));
  const uint64_t nl = make_nonleaf(Pfn{0x99});
  EXPECT_TRUE(is_nonleaf(nl, PgLevel::k2M));
  EXPECT_FALSE(is_last(nl, PgLevel::k2M));
  // At 4K every present entry is a leaf, whatever bit 7 says.
  EXPECT_TRUE(is_last(nl, PgLevel::k4K));
  EXPECT_EQ(to_pfn(nl), Pfn{0x99});
  const uint64_t ro = make_leaf(Pfn{1}, PgLevel::k4K, {.writable = false});
  EXPECT_FALSE(is_writable(ro));
  EXPECT_TRUE(is_mmu_writable(ro));
  // Read-only in the host: nothing may make it writable without a fault.
  const uint64_t host_ro = make_leaf(Pfn{1}, PgLevel::k4K, {.host_writable = false});
  EXPECT_FALSE(is_writable(host_ro));
  EXPECT_FALSE(is_mmu_writable(host_ro));
  EXPECT_FALSE(host_ro & kHostWritable);
}

TEST(Spte, SplitOffsetsPfnsAndDropsTheLargeBitAt4K) {
  const uint64_t huge = make_leaf(Pfn{0x400}, PgLevel::k2M, {.writable = false});
  for (int i : {0, 1, 255, 511}) {
    const uint64_t s = make_small(huge, PgLevel::k4K, i);
    EXPECT_EQ(to_pfn(s), Pfn{0x400u + i});
    EXPECT_FALSE(is_large(s));
    EXPECT_FALSE(is_writable(s));  // protection carries over
  }
  const uint64_t g = make_leaf(Pfn{0x40000}, PgLevel::k1G);
  EXPECT_EQ(to_pfn(make_small(g, PgLevel::k2M, 3)), Pfn{0x40000u + 3 * 512});
  EXPECT_TRUE(is_large(make_small(g, PgLevel::k2M, 3)));
}

TEST(Spte, MmioIsRecognisedPerVmValue) {
  const uint64_t tdx = make_mmio(Gfn{0x1234}, kMmioValueTdx, 5);
  EXPECT_TRUE(is_mmio(tdx, kMmioValueTdx));
  EXPECT_FALSE(is_shadow_present(tdx));
  EXPECT_FALSE(is_mmio(tdx, kMmioValueVmx));
  const uint64_t vmx = make_mmio(Gfn{0x1234}, kMmioValueVmx, 5);
  EXPECT_TRUE(is_mmio(vmx, kMmioValueVmx));
  EXPECT_FALSE(is_mmio(kNonPresent, kMmioValueTdx));
  EXPECT_FALSE(is_mmio(kFrozen, kMmioValueTdx));
}

TEST(Spte, VolatileBitsNeedAtomicExclusiveWrites) {
  EXPECT_TRUE(has_volatile_bits(make_leaf(Pfn{1}, PgLevel::k4K)));
  EXPECT_FALSE(has_volatile_bits(kNonPresent));
  EXPECT_FALSE(has_volatile_bits(kFrozen));
}

}  // namespace
}  // namespace mirrormmu::test
