// SPDX-License-Identifier: MIT
#include "base/block_slab.h"

#include <sys/mman.h>

#include <cstdlib>
#include <stdexcept>

#include "base/sanitizers.h"

namespace mirrormmu {

namespace {
#if defined(MIRRORMMU_ASAN) || defined(MIRRORMMU_TSAN)
constexpr bool kFromMalloc = true;
#else
constexpr bool kFromMalloc = false;
#endif

size_t round_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }

char* map_region(size_t region) {
  void* p = mmap(nullptr, region, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : static_cast<char*>(p);
}
}  // namespace

BlockSlab::BlockSlab(size_t size, size_t align) : size_(round_up(size, align)), align_(align) {
  if (align == 0 || (align & (align - 1)) != 0 || align > 4096 || size == 0 || size_ > kRegion)
    throw std::invalid_argument("BlockSlab: a block must be at most 2 MiB, aligned to a power of two up to 4096");
}

void* BlockSlab::alloc() {
  if (kFromMalloc) return std::aligned_alloc(align_, size_);
  std::lock_guard g(mu_);
  if (!free_.empty()) {
    void* b = free_.back();
    free_.pop_back();
    return b;
  }
  if (static_cast<size_t>(end_ - next_) < size_) {
    // The tail of the old region too small for a block is left unused.
    char* r = map_region(kRegion);
    if (r == nullptr) return nullptr;
    next_ = r;
    end_ = r + kRegion;
    reserved_ += kRegion;
  }
  void* b = next_;
  next_ += size_;
  return b;
}

void BlockSlab::free(void* block) {
  if (block == nullptr) return;
  if (kFromMalloc) {
    std::free(block);
    return;
  }
  std::lock_guard g(mu_);
  free_.push_back(block);
}

size_t BlockSlab::reserved() const {
  std::lock_guard g(mu_);
  return reserved_;
}

}  // namespace mirrormmu
