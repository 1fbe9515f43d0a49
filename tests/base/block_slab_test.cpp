// SPDX-License-Identifier: MIT
// BlockSlab: blocks are aligned, disjoint and writable across regions, a
// freed block is handed out again, and sizes it cannot carve are refused.
// The classic bug of a carving allocator is a block that runs past its
// region's end (or overlaps the next block): every block below is filled
// with its own byte and checked after all are out.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <set>
#include <stdexcept>
#include <vector>

#include "base/block_slab.h"
#include "base/sanitizers.h"

namespace mirrormmu::test {
namespace {

TEST(BlockSlab, BlocksAreAlignedDisjointAndSurviveEachOthersWrites) {
  // 4136 bytes (an S-EPT table's size): 507 to a region, with a tail left.
  constexpr size_t kSize = 4136;
  BlockSlab slab(kSize, 8);
  std::vector<unsigned char*> blocks;
  for (int i = 0; i < 1200; i++) {  // more than two regions' worth
    auto* b = static_cast<unsigned char*>(slab.alloc());
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % 8, 0u);
    std::memset(b, i & 0xff, kSize);
    blocks.push_back(b);
  }
  for (size_t i = 0; i < blocks.size(); i++) {
    EXPECT_EQ(blocks[i][0], i & 0xff) << i;
    EXPECT_EQ(blocks[i][kSize - 1], i & 0xff) << i;
  }
  std::set<unsigned char*> distinct(blocks.begin(), blocks.end());
  EXPECT_EQ(distinct.size(), blocks.size());
#if !defined(MIRRORMMU_ASAN) && !defined(MIRRORMMU_TSAN)
  // 1200 blocks of 4136 bytes, 507 to a 2 MiB region: three regions.
  EXPECT_EQ(slab.reserved(), size_t{3} << 21);
#endif
  for (unsigned char* b : blocks) slab.free(b);
}

TEST(BlockSlab, AFreedBlockIsReusedBeforeNewMemory) {
  BlockSlab slab(4096, 4096);
  void* a = slab.alloc();
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 4096, 0u);
  const size_t reserved = slab.reserved();
  slab.free(a);
  void* b = slab.alloc();
#if !defined(MIRRORMMU_ASAN) && !defined(MIRRORMMU_TSAN)
  EXPECT_EQ(b, a);
  EXPECT_EQ(slab.reserved(), reserved);
#else
  EXPECT_EQ(slab.reserved(), 0u) << "under the sanitizers every block is malloc's";
#endif
  std::memset(b, 0x5a, 4096);
  slab.free(b);
  slab.free(nullptr);
}

TEST(BlockSlab, SizesItCannotCarveAreRefused) {
  EXPECT_THROW(BlockSlab(0, 8), std::invalid_argument);
  EXPECT_THROW(BlockSlab(64, 3), std::invalid_argument);
  EXPECT_THROW(BlockSlab(64, 8192), std::invalid_argument);
  EXPECT_THROW(BlockSlab((size_t{2} << 20) + 1, 8), std::invalid_argument);
}

}  // namespace
}  // namespace mirrormmu::test
