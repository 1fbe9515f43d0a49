// SPDX-License-Identifier: MIT
// Fixed-size blocks carved one after another from 2 MiB regions, for what a
// big TD has hundreds of thousands of: page tables of the mirror and of the
// S-EPT.
//
// Why not malloc: aligned_alloc(4096, 4096) has glibc carve each block out
// of a chunk of 8 KiB and more (the chunk header sits before the aligned
// block), so every page table touched two pages. Carved back to back, a
// 64 GiB td-life peaked at 344 MiB instead of 390, and ran 1-5 % faster
// (best of three, side by side).
//
// Not transparent huge pages: with the regions advised MADV_HUGEPAGE, the
// page faults fell from 97,000 to 17,000-42,000, but the kernel's time went
// from 0.23 s to 0.8 s (zeroing 2 MiB pages of memory the hypervisor had
// not backed yet) and the run was 0.5-0.9 s slower on this project's VMs.
//
// Freed blocks are kept for the next allocation of the same slab, never
// returned to the kernel: a process's slab is as large as its peak. Under
// ASan and TSan every block comes from malloc and goes back to it, so that
// a use after free is still reported.
#pragma once

#include <cstddef>
#include <mutex>
#include <vector>

namespace mirrormmu {

class BlockSlab {
 public:
  // Blocks of `size` bytes aligned to `align` (a power of two, at most
  // 4096: regions are page-aligned).
  BlockSlab(size_t size, size_t align);
  BlockSlab(const BlockSlab&) = delete;
  BlockSlab& operator=(const BlockSlab&) = delete;

  // Null if out of memory. Contents undefined.
  void* alloc();
  void free(void* block);

  // Bytes taken from the kernel so far (0 under the sanitizers).
  size_t reserved() const;

 private:
  static constexpr size_t kRegion = size_t{2} << 20;
  const size_t size_;
  const size_t align_;
  mutable std::mutex mu_;
  std::vector<void*> free_;
  char* next_ = nullptr;  // the unused rest of the newest region
  char* end_ = nullptr;
  size_t reserved_ = 0;
};

}  // namespace mirrormmu
