// SPDX-License-Identifier: MIT
// A map from a frame number to a 64-bit value, for the few frames at a time
// that carry some state most frames never have (the TDX module's BEPOCH of
// blocked objects). Open addressing with linear probing in one array, and
// deletion by shifting the entries after the hole back (no tombstones, so a
// map that takes and drops one key per page of a 64 GiB teardown stays as
// small as the most keys it ever held at once). std::unordered_map cost a
// node allocation, a free and three hashes per page of such a teardown.
//
// Not thread-safe: its owner's lock guards it.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace mirrormmu {

class FrameMap {
 public:
  size_t size() const { return size_; }

  std::optional<uint64_t> find(uint64_t key) const {
    if (size_ == 0) return std::nullopt;
    for (size_t i = home(key);; i = next(i)) {
      const Slot& s = slots_[i];
      if (!s.used) return std::nullopt;
      if (s.key == key) return s.value;
    }
  }

  void set(uint64_t key, uint64_t value) {
    if (2 * (size_ + 1) > slots_.size()) grow();
    for (size_t i = home(key);; i = next(i)) {
      Slot& s = slots_[i];
      if (!s.used) {
        s = Slot{key, value, true};
        size_++;
        return;
      }
      if (s.key == key) {
        s.value = value;
        return;
      }
    }
  }

  void erase(uint64_t key) {
    if (size_ == 0) return;
    size_t hole = home(key);
    for (;; hole = next(hole)) {
      if (!slots_[hole].used) return;
      if (slots_[hole].key == key) break;
    }
    // Every entry after the hole, up to the next free slot, whose home is
    // not cyclically within (hole, i] would become unreachable past the
    // hole: it moves into it, and its old slot is the new hole.
    for (size_t i = next(hole); slots_[i].used; i = next(i)) {
      const size_t h = home(slots_[i].key);
      const bool reachable = hole < i ? (hole < h && h <= i) : (hole < h || h <= i);
      if (reachable) continue;
      slots_[hole] = slots_[i];
      hole = i;
    }
    slots_[hole].used = false;
    size_--;
  }

 private:
  struct Slot {
    uint64_t key = 0;
    uint64_t value = 0;
    bool used = false;
  };

  size_t home(uint64_t key) const {
    // Fibonacci hashing: neighbouring frames land far apart.
    return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_);
  }
  size_t next(size_t i) const { return (i + 1) & (slots_.size() - 1); }

  void grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    const size_t n = old.empty() ? 16 : 2 * old.size();
    slots_.assign(n, Slot{});
    shift_ = 64 - __builtin_ctzll(n);
    size_ = 0;
    for (const Slot& s : old)
      if (s.used) set(s.key, s.value);
  }

  std::vector<Slot> slots_;
  unsigned shift_ = 64;
  size_t size_ = 0;
};

}  // namespace mirrormmu
