// SPDX-License-Identifier: MIT
// Zeroed arrays (base/zeroed_arrays.h): what is taken is zero, what is
// given back zeroed comes back to the next taker of its size, and sizes are
// never mixed up.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <vector>

#include "base/sanitizers.h"
#include "base/zeroed_arrays.h"

namespace mirrormmu::test {
namespace {

bool all_zero(const void* p, size_t bytes) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < bytes; i++)
    if (b[i] != 0) return false;
  return true;
}

TEST(ZeroedArrays, TakenArraysAreZeroAndAligned) {
  for (const size_t bytes : {size_t{16}, size_t{4096}, size_t{100000}, size_t{1} << 20}) {
    void* p = take_zeroed_array(bytes);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % alignof(std::max_align_t), 0u);
    EXPECT_TRUE(all_zero(p, bytes)) << bytes;
    give_back_zeroed_array(p, bytes);
  }
  EXPECT_EQ(take_zeroed_array(0), nullptr);
  give_back_zeroed_array(nullptr, 0);
}

TEST(ZeroedArrays, AnArrayGivenBackIsTheNextTakersOfItsSize) {
#if defined(MIRRORMMU_ASAN) || defined(MIRRORMMU_TSAN)
  GTEST_SKIP() << "under the sanitizers every array is calloc's, freed when given back";
#endif
  // An odd size nothing else in the process takes.
  constexpr size_t kBytes = 3 * 4096 + 24;
  auto* a = static_cast<uint64_t*>(take_zeroed_array(kBytes));
  a[0] = 1;
  a[kBytes / 8 - 1] = 2;
  std::memset(a, 0, kBytes);
  give_back_zeroed_array(a, kBytes);
  void* other = take_zeroed_array(kBytes + 4096);
  EXPECT_NE(other, a) << "an array of another size was handed out";
  void* again = take_zeroed_array(kBytes);
  EXPECT_EQ(again, a);
  EXPECT_TRUE(all_zero(again, kBytes));
  give_back_zeroed_array(again, kBytes);
  give_back_zeroed_array(other, kBytes + 4096);
}

TEST(ZeroedArrays, ManyAtOnceAreDistinctAndAllGoBack) {
  constexpr size_t kBytes = 5 * 4096;
  std::vector<void*> taken;
  for (int i = 0; i < 40; i++) {
    taken.push_back(take_zeroed_array(kBytes));
    ASSERT_TRUE(all_zero(taken.back(), kBytes));
    static_cast<unsigned char*>(taken.back())[i * 97] = 0xff;  // written, then zeroed again below
  }
  EXPECT_EQ(std::set<void*>(taken.begin(), taken.end()).size(), taken.size());
  for (int i = 0; i < 40; i++) {
    static_cast<unsigned char*>(taken[i])[i * 97] = 0;
    give_back_zeroed_array(taken[i], kBytes);
  }
  // Kept or unmapped, whichever each was: every taker still finds zeros.
  for (int i = 0; i < 40; i++) {
    void* p = take_zeroed_array(kBytes);
    EXPECT_TRUE(all_zero(p, kBytes));
    give_back_zeroed_array(p, kBytes);
  }
}

}  // namespace
}  // namespace mirrormmu::test
