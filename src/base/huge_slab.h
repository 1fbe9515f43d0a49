// SPDX-License-Identifier: MIT
// Fixed-size blocks carved from 2 MiB regions that the kernel is asked to
// back with transparent huge pages (MADV_HUGEPAGE), for what a big TD has
// hundreds of thousands of: page tables of the mirror and of the S-EPT, and
// the guest_memfd's pfn blocks. About 350 of the 390 MiB a 64 GiB td-life
// holds at its peak.
//
// Why not malloc: first touching a 4 KiB page of new memory took 5.6 to 11
// microseconds on this project's VMs (the hypervisor backs guest memory on
// demand), and a 64 GiB run touched 97,000 of them: 6 % of the run in
// clear_page_erms. A fault on a huge page costs about as much and brings
// 512 pages (0.57 us per 4 KiB measured). Fewer TLB misses on the page
// walks come with it.
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

class HugeSlab {
 public:
  // Blocks of `size` bytes aligned to `align` (a power of two, at most
  // 4096, dividing the 2 MiB region).
  HugeSlab(size_t size, size_t align);
  HugeSlab(const HugeSlab&) = delete;
  HugeSlab& operator=(const HugeSlab&) = delete;

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
