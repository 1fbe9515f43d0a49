// SPDX-License-Identifier: MIT
// FrameMap against std::unordered_map: any sequence of sets and erases
// leaves the same contents. The classic bug of backward-shift deletion is
// an entry stranded behind a hole (erase leaves a gap its probe stops at);
// keys that collide and wrap around the end of the array are where it
// shows, so the generated keys come from a small range and the tests below
// build those cases on purpose.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <unordered_map>
#include <vector>

#include "base/frame_map.h"

namespace mirrormmu::test {
namespace {

void expect_same(const FrameMap& m, const std::unordered_map<uint64_t, uint64_t>& ref, uint64_t key_range) {
  EXPECT_EQ(m.size(), ref.size());
  for (uint64_t k = 0; k < key_range; k++) {
    const auto it = ref.find(k);
    const std::optional<uint64_t> got = m.find(k);
    if (it == ref.end()) {
      EXPECT_FALSE(got.has_value()) << "key " << k << " erased or never set";
    } else {
      ASSERT_TRUE(got.has_value()) << "key " << k << " lost";
      EXPECT_EQ(*got, it->second) << "key " << k;
    }
  }
}

TEST(FrameMap, EveryKeyOfAFullRunIsFoundAndErasedOneByOne) {
  FrameMap m;
  std::unordered_map<uint64_t, uint64_t> ref;
  for (uint64_t k = 0; k < 1000; k++) {
    m.set(k * 512, k);
    ref[k * 512] = k;
  }
  expect_same(m, ref, 0);
  for (uint64_t k = 0; k < 1000; k += 3) {
    m.erase(k * 512);
    ref.erase(k * 512);
  }
  for (const auto& [k, v] : ref) {
    ASSERT_TRUE(m.find(k).has_value()) << k;
    EXPECT_EQ(*m.find(k), v);
  }
  EXPECT_EQ(m.size(), ref.size());
}

TEST(FrameMap, ErasingAnAbsentKeyChangesNothing) {
  FrameMap m;
  m.erase(7);
  m.set(7, 1);
  m.erase(8);
  EXPECT_EQ(m.size(), 1u);
  EXPECT_EQ(m.find(7), std::optional<uint64_t>(1));
}

TEST(FrameMap, SettingAgainReplacesTheValue) {
  FrameMap m;
  m.set(3, 1);
  m.set(3, 2);
  EXPECT_EQ(m.size(), 1u);
  EXPECT_EQ(m.find(3), std::optional<uint64_t>(2));
}

// One key in, one key out, millions of times: the teardown's pattern. The
// array must not grow with the number of keys that passed through.
TEST(FrameMap, OneInOneOutStaysSmall) {
  FrameMap m;
  for (uint64_t k = 0; k < 100000; k++) {
    m.set(k, k);
    m.erase(k);
  }
  EXPECT_EQ(m.size(), 0u);
  for (uint64_t k = 0; k < 100000; k++) ASSERT_FALSE(m.find(k).has_value());
}

RC_GTEST_PROP(FrameMap, MatchesUnorderedMap, ()) {
  // A small key range, so that keys collide, probes wrap and erases shift.
  const auto ops = *rc::gen::container<std::vector<std::tuple<bool, uint64_t, uint64_t>>>(
      rc::gen::tuple(rc::gen::arbitrary<bool>(), rc::gen::inRange<uint64_t>(0, 64), rc::gen::arbitrary<uint64_t>()));
  FrameMap m;
  std::unordered_map<uint64_t, uint64_t> ref;
  for (const auto& [insert, key, value] : ops) {
    if (insert) {
      m.set(key, value);
      ref[key] = value;
    } else {
      m.erase(key);
      ref.erase(key);
    }
    RC_ASSERT(m.size() == ref.size());
  }
  for (uint64_t k = 0; k < 64; k++) {
    const auto it = ref.find(k);
    const std::optional<uint64_t> got = m.find(k);
    RC_ASSERT(got.has_value() == (it != ref.end()));
    if (got) RC_ASSERT(*got == it->second);
  }
}

}  // namespace
}  // namespace mirrormmu::test
