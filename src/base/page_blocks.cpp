// SPDX-License-Identifier: MIT
#include "base/page_blocks.h"

#include <cstdlib>
#include <vector>

#include "base/block_slab.h"
#include "base/sanitizers.h"
#include "base/types.h"

#ifdef MIRRORMMU_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace mirrormmu {

namespace {
// A few executions' worth: 16 MiB.
constexpr size_t kKept = 4096;

BlockSlab& slab() {
  // Never destroyed: a block may be freed by another static object at exit.
  static BlockSlab& s = *new BlockSlab(kPageSize, kPageSize);
  return s;
}

struct Blocks {
  std::vector<void*> free;
  ~Blocks() {
    for (void* b : free) {
#ifdef MIRRORMMU_ASAN
      __asan_unpoison_memory_region(b, kPageSize);
#endif
      slab().free(b);
    }
  }
};

Blocks& mine() {
  thread_local Blocks b;
  return b;
}
}  // namespace

void* page_block_alloc() {
  auto& f = mine().free;
  if (f.empty()) return slab().alloc();
  void* b = f.back();
  f.pop_back();
#ifdef MIRRORMMU_ASAN
  __asan_unpoison_memory_region(b, kPageSize);
#endif
  return b;
}

void page_block_free(void* block) { slab().free(block); }

void page_block_recycle(void* block) {
  auto& f = mine().free;
  if (f.size() >= kKept) {
    slab().free(block);
    return;
  }
#ifdef MIRRORMMU_ASAN
  __asan_poison_memory_region(block, kPageSize);
#endif
  f.push_back(block);
}

}  // namespace mirrormmu
