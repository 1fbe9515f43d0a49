// SPDX-License-Identifier: MIT
#include "base/zeroed_arrays.h"

#include <sys/mman.h>

#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#include "base/sanitizers.h"

namespace mirrormmu {

#if !defined(MIRRORMMU_ASAN) && !defined(MIRRORMMU_TSAN)
namespace {
// Enough for the explorer's jobs, each holding a pool's slots and a few
// backings; a big run's arrays go back to the host.
constexpr size_t kKept = 32;
constexpr size_t kKeptBytes = size_t{16} << 20;

struct Kept {
  void* p;
  size_t bytes;
};
std::mutex& kept_mu() {
  static std::mutex m;
  return m;
}
// Never destroyed: an array may come back from a static object at exit.
std::vector<Kept>& kept() {
  static std::vector<Kept>* k = new std::vector<Kept>();
  return *k;
}
}  // namespace
#endif

void* take_zeroed_array(size_t bytes) {
  if (bytes == 0) return nullptr;
#if defined(MIRRORMMU_ASAN) || defined(MIRRORMMU_TSAN)
  // From the heap, where LeakSanitizer looks for pointers (it does not scan
  // mappings of our own: a page table reachable only through a pool's slots
  // was reported leaked) and out-of-bounds reads are caught.
  void* h = std::calloc(1, bytes);
  if (h == nullptr) throw std::bad_alloc();
  return h;
#else
  {
    std::lock_guard g(kept_mu());
    auto& k = kept();
    for (size_t i = 0; i < k.size(); i++)
      if (k[i].bytes == bytes) {
        void* p = k[i].p;
        k[i] = k.back();
        k.pop_back();
        return p;
      }
  }
  // No swap reserved: the host backs only the pages written.
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return p;
#endif
}

void give_back_zeroed_array(void* p, size_t bytes) {
  if (p == nullptr) return;
#if defined(MIRRORMMU_ASAN) || defined(MIRRORMMU_TSAN)
  std::free(p);
#else
  if (bytes <= kKeptBytes) {
    std::lock_guard g(kept_mu());
    if (kept().size() < kKept) {
      kept().push_back({p, bytes});
      return;
    }
  }
  munmap(p, bytes);
#endif
}

}  // namespace mirrormmu
