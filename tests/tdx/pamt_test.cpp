// SPDX-License-Identifier: MIT
// The PAMT's byte per frame against a plain model of what it records: the
// page type and size the module reads, and the cache-dirty bit the model
// keeps beside them. The classic bugs of packing a second fact into the
// byte are a set() or clear() that drops the other fact (a REMOVE that
// forgets the lines still need a WBINVD), and a scan that reads the packed
// bytes eight at a time and misses or misplaces frames at the edges of a
// word or in the tail; the frame counts below cross both on purpose.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <vector>

#include "tdx/pamt.h"

namespace mirrormmu::test {
namespace {

using tdx::Pamt;
using tdx::PamtType;

struct Frame {
  PamtType type = PamtType::Nda;
  int size = 0;
  bool dirty = false;
};

void expect_same(const Pamt& p, const std::vector<Frame>& ref) {
  std::vector<uint64_t> listed;
  p.for_each_cache_dirty([&](Pfn f) { listed.push_back(f.v); });
  std::vector<uint64_t> dirty;
  for (uint64_t i = 0; i < ref.size(); i++) {
    EXPECT_EQ(p.type(Pfn{i}), ref[i].type) << "frame " << i;
    EXPECT_EQ(p.size_level(Pfn{i}), ref[i].size) << "frame " << i;
    EXPECT_EQ(p.cache_dirty(Pfn{i}), ref[i].dirty) << "frame " << i;
    if (ref[i].dirty) dirty.push_back(i);
  }
  EXPECT_EQ(listed, dirty);
}

TEST(Pamt, ARemovedPageKeepsItsDirtyLinesUntilWbinvd) {
  Pamt p(1024);
  p.set(Pfn{512}, 1, PamtType::Reg, /*dirties_cache=*/true);  // a 2M AUG
  EXPECT_EQ(p.type(Pfn{700}), PamtType::Reg);
  EXPECT_EQ(p.size_level(Pfn{700}), 1);
  // DEMOTE re-records the frames as 4K pages: still dirty.
  for (uint64_t i = 512; i < 1024; i++) p.set(Pfn{i}, 0, PamtType::Reg);
  EXPECT_TRUE(p.cache_dirty(Pfn{1023}));
  EXPECT_EQ(p.size_level(Pfn{1023}), 0);
  p.clear(Pfn{1023}, 0);  // REMOVE
  EXPECT_EQ(p.type(Pfn{1023}), PamtType::Nda);
  EXPECT_TRUE(p.all_nda(Pfn{1023}, 1));
  EXPECT_TRUE(p.cache_dirty(Pfn{1023})) << "REMOVE does not write the lines back";
  p.clean_cache(Pfn{1023});  // WBINVD
  EXPECT_FALSE(p.cache_dirty(Pfn{1023}));
  EXPECT_TRUE(p.cache_dirty(Pfn{1022}));
  p.clean_all_caches();  // CACHE.WB
  EXPECT_FALSE(p.cache_dirty(Pfn{512}));
  EXPECT_EQ(p.type(Pfn{512}), PamtType::Reg) << "a cache flush changes no PAMT entry";
}

RC_GTEST_PROP(Pamt, SetClearAndCleanAgreeWithAPlainModel, ()) {
  const auto n = *rc::gen::inRange<uint64_t>(1, 41);
  Pamt p(n);
  std::vector<Frame> ref(n);
  const auto steps = *rc::gen::inRange(0, 120);
  for (int s = 0; s < steps; s++) {
    const auto f = *rc::gen::inRange<uint64_t>(0, n);
    switch (*rc::gen::inRange(0, 5)) {
      case 0: {
        const auto type = *rc::gen::element(PamtType::Reg, PamtType::Ept, PamtType::Tdr, PamtType::Tdcx);
        const bool dirties = *rc::gen::arbitrary<bool>();
        p.set(Pfn{f}, 0, type, dirties);
        ref[f] = {type, 0, ref[f].dirty || dirties};
        break;
      }
      case 1:
        p.clear(Pfn{f}, 0);
        ref[f] = {PamtType::Nda, 0, ref[f].dirty};
        break;
      case 2:
      case 3:
        p.clean_cache(Pfn{f});
        ref[f].dirty = false;
        break;
      default:
        if (*rc::gen::inRange(0, 8) == 0) {
          p.clean_all_caches();
          for (Frame& fr : ref) fr.dirty = false;
        }
        break;
    }
  }
  expect_same(p, ref);
  // A slice, as the checker walks the pool: unaligned, and running past the end.
  const auto first = *rc::gen::inRange<uint64_t>(0, n + 3);
  const auto len = *rc::gen::inRange<uint64_t>(0, n + 3);
  std::vector<uint64_t> got, want;
  p.for_each_cache_dirty([&](Pfn f) { got.push_back(f.v); }, first, len);
  for (uint64_t i = first; i < std::min(n, first + len); i++)
    if (ref[i].dirty) want.push_back(i);
  RC_ASSERT(got == want);
}

}  // namespace
}  // namespace mirrormmu::test
