// SPDX-License-Identifier: MIT
// A set of page addresses for the engine's quarantine, looked up at every
// SPTE access while an execution tears down: open addressing over a power of
// two with a multiplicative hash, because the prime-modulo buckets of
// std::unordered_set cost a division per lookup, which was a fifth of the
// explorer's time.
#pragma once

#include <cstdint>
#include <vector>

namespace mirrormmu::sync {

class PageSet {
 public:
  bool empty() const { return size_ == 0; }
  bool contains(uintptr_t page) const {
    if (size_ == 0) return false;
    for (size_t i = slot(page);; i = (i + 1) & (slots_.size() - 1)) {
      if (slots_[i] == page) return true;
      if (slots_[i] == 0) return false;
    }
  }
  void insert(uintptr_t page) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    size_t i = slot(page);
    for (; slots_[i] != 0; i = (i + 1) & (slots_.size() - 1))
      if (slots_[i] == page) return;
    slots_[i] = page;
    size_++;
  }

 private:
  size_t slot(uintptr_t page) const {
    return static_cast<size_t>(((page >> 12) * 0x9e3779b97f4a7c15ull) >> shift_);
  }
  void grow() {
    std::vector<uintptr_t> old;
    old.swap(slots_);
    slots_.assign(old.empty() ? 64 : old.size() * 2, 0);
    shift_ = 64;
    for (size_t n = slots_.size(); n > 1; n >>= 1) shift_--;
    size_ = 0;
    for (uintptr_t p : old)
      if (p) insert(p);
  }

  std::vector<uintptr_t> slots_;  // 0: empty (no page lives at address 0)
  int shift_ = 64;
  size_t size_ = 0;
};

}  // namespace mirrormmu::sync
