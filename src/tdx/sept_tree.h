// SPDX-License-Identifier: MIT
// The Secure EPT as the TDX module keeps it: a radix tree of 512-entry
// tables, each table living in a host frame the host donated (SEPT.ADD) or,
// for the root, in the first TDCS page.
//
// An entry is one packed 32-bit word: bits 2:0 the SeptState, bit 3 the
// module's per-entry lock (TDEL), bits 31:4 the frame (child table for a
// non-leaf, mapped page for a leaf). A FREE entry is 0, so a new table is
// all FREE. 28 bits of frame number reach 1 TiB of host frames, which the
// module checks its pool against (sept::kMaxFrames); half a 64-bit word is
// 64 MiB less for a 64 GiB TD mapped at 4K.
// Tables are found by the frame that holds them; a 64 GiB TD at 4K has about
// 32K tables, so the map costs little next to the tables themselves. Every
// per-page call walks from the root, though, and a hash lookup per level
// was a tenth of a populate: a non-leaf table remembers the child tables its
// walks found, checked against the entry's frame on each use.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "base/types.h"
#include "tdx/module.h"

namespace mirrormmu::tdx {

namespace sept {

using Word = uint32_t;
inline constexpr Word kStateMask = 0x7;
inline constexpr Word kLockBit = 1u << 3;
inline constexpr unsigned kPfnShift = 4;
inline constexpr uint64_t kMaxFrames = uint64_t{1} << (32 - kPfnShift);

// `pfn` is below kMaxFrames: a frame of the module's pool.
constexpr Word make_entry(SeptState s, Pfn pfn) {
  return static_cast<Word>(pfn.v << kPfnShift) | static_cast<Word>(s);
}
constexpr SeptState state_of(Word e) { return static_cast<SeptState>(e & kStateMask); }
constexpr Pfn pfn_of(Word e) {
  return state_of(e) == SeptState::Free ? kInvalidPfn : Pfn{uint64_t{e} >> kPfnShift};
}
// Same entry with a new state, keeping frame and lock bit.
constexpr Word with_state(Word e, SeptState s) { return (e & ~kStateMask) | static_cast<Word>(s); }

// Bytes mapped by one entry at TDX level `level`.
constexpr int level_shift(int level) { return kPageShift + kLevelBits * level; }
constexpr uint64_t level_bytes(int level) { return 1ull << level_shift(level); }
constexpr uint64_t level_pages(int level) { return 1ull << (kLevelBits * level); }
constexpr int entry_index(uint64_t gpa, int level) {
  return static_cast<int>((gpa >> level_shift(level)) & (kSptePerPage - 1));
}

// Architectural view returned in RCX on errors and by SEPT.RD: the HPA only
// for leaves (the module hides S-EPT page addresses), RWX only where the
// guest may access, suppress-#VE on FREE.
uint64_t arch_entry(Word e, int level);
// RDX: bits 2:0 level, bits 15:8 public state.
uint64_t level_state(Word e, int level);

}  // namespace sept

class SeptTree;

struct SeptTable {
  std::array<sept::Word, kSptePerPage> e{};
  int level = 0;  // level of the entries this table holds
  Pfn pfn = kInvalidPfn;  // the frame holding it
  const SeptTree* tree = nullptr;  // told of each write through a SeptWalk
  // Non-leaf tables only: the child table each entry led a walk to. Filled
  // by walks that may run side by side (under the model's lock shared), so
  // atomic; cleared when the child table goes (only under it exclusive).
  std::unique_ptr<std::atomic<SeptTable*>[]> child;
  // The slot of the parent that caches this table, so that dropping this
  // table clears it before the pointer dangles.
  std::atomic<std::atomic<SeptTable*>*> cached_in{nullptr};

  // From a BlockSlab: a 64 GiB TD has 32,768 of them.
  static void* operator new(size_t size);
  static void operator delete(void* p);
};

// Where a walk ended. `table` is null only when there is no root table.
// Sixteen bytes, returned in two registers: a larger one went through the
// stack, and the caller's wide loads of the narrow stores just made
// stalled on store forwarding at every per-page SEAMCALL. The last byte is
// a member too: with 15 bytes of members, a copy was two overlapping
// 8-byte moves, the second loading across both halves just stored.
struct SeptWalk {
  SeptTable* table = nullptr;
  int32_t index = 0;
  int16_t level = 0;
  bool reached = false;  // ended at the requested level
  uint8_t unused = 0;

  // Entries are read and written atomically: PAGE.AUGs on other CPUs lock
  // and fill entries of the same table while this walk reads it.
  sept::Word& raw() const { return table->e[static_cast<size_t>(index)]; }
  sept::Word value() const {
    return table ? std::atomic_ref<sept::Word>(raw()).load(std::memory_order_relaxed) : 0;
  }
  // The entry becomes `e`, keeping the lock bit of the call that holds it
  // (the call's LockSet drops it on return).
  inline void set(sept::Word e) const;
  SeptState state() const { return sept::state_of(value()); }
  Pfn pfn() const { return sept::pfn_of(value()); }
};
static_assert(sizeof(SeptWalk) == 16, "returned in registers");

class SeptTree {
 public:
  explicit SeptTree(int sept_levels);

  int root_level() const { return levels_ - 1; }
  // First GPA bit that is not private: the shared bit (47 or 51). GPAW is
  // one bit wider, so "below the shared bit" also means "within GPAW".
  int shared_bit() const { return levels_ == 5 ? 51 : 47; }
  Pfn root() const { return root_; }

  void create_root(Pfn pfn);
  SeptTable& add_table(Pfn pfn, int level);
  SeptTable* find(Pfn pfn) const;
  // Drops a table (SEPT.REMOVE, or reclaim after teardown). Entries that
  // still point at it are no longer walked or reported.
  void remove_table(Pfn pfn);
  size_t table_count() const { return tables_.size(); }

  // Walk from the root toward `level`; stop early at any entry that is not
  // NL_MAPPED (FREE, NL_BLOCKED, a leaf) or whose child table is gone.
  SeptWalk walk(uint64_t gpa, int level) const;

  // Writes an entry of a table of this tree. Whatever changes a non-leaf
  // entry (or makes one) must come through here or SeptWalk::set: it moves
  // the paths walks take, which the walk cache must hear of.
  void set_entry(SeptTable& t, int index, sept::Word e) const {
    SeptWalk w;
    w.table = &t;
    w.index = index;
    w.set(e);
  }
  // An entry went from `old` to `e` (SeptWalk::set, set_entry).
  void wrote(sept::Word old, sept::Word e) const {
    if (is_nonleaf_state(sept::state_of(old)) || is_nonleaf_state(sept::state_of(e))) [[unlikely]]
      paths_changed();
  }

  // The two classic bugs of a child cache, planted so a test can show walks
  // going wrong with either: a removed table left in its parent's slot, or
  // a cached child trusted without checking it against the entry's frame.
  // A table removed under KeepOnRemove is parked, not freed, so the bug
  // shows as a walk into a table the tree no longer has, not as undefined
  // behaviour.
  // The walk cache's own classic bug is the third: a path that changed
  // without the cache hearing of it (StaleWalkCache), so a walk returns a
  // table the real walk would no longer reach.
  enum class CacheFlaw : uint8_t { None, KeepOnRemove, TrustCache, StaleWalkCache };
  void plant_flaw(CacheFlaw f) { flaw_ = f; }

  using Visitor = std::function<void(uint64_t gpa, int level, sept::Word entry)>;
  // Every non-FREE entry, parents before children, in GPA order.
  void for_each(const Visitor& fn) const;
  // The same, for entries whose GPA lies in [start, end) and whose level is
  // `lowest` or above; tables are entered only where they overlap. A
  // template: the checker visits every entry of what an operation touched,
  // and a std::function call per entry was a fifth of that.
  template <class Fn>
  void for_each_in(uint64_t start, uint64_t end, int lowest, Fn&& fn) const {
    if (const SeptTable* root = root_table_) visit(*root, 0, start, end, lowest, fn);
  }

 private:
  // The child table entry `e` of `t` at `index` points at, or null.
  SeptTable* child_of(const SeptTable& t, int index, sept::Word e) const;
  template <class Fn>
  void visit(const SeptTable& t, uint64_t base, uint64_t start, uint64_t end, int lowest, Fn& fn) const {
    const uint64_t span = uint64_t{1} << sept::level_shift(t.level);
    for (uint64_t i = start > base ? (start - base) / span : 0; i < t.e.size(); ++i) {
      const uint64_t gpa = base + i * span;
      if (gpa >= end) break;
      const sept::Word e =
          std::atomic_ref<sept::Word>(const_cast<sept::Word&>(t.e[i])).load(std::memory_order_relaxed);
      const SeptState s = sept::state_of(e);
      if (s == SeptState::Free) continue;
      if (gpa >= start) fn(gpa, t.level, e);
      // Blocked subtrees are still part of the tree; only walks stop there.
      if (is_nonleaf_state(s) && t.level > lowest) {
        if (const SeptTable* child = t.child ? child_of(t, static_cast<int>(i), e) : find(sept::pfn_of(e)))
          visit(*child, gpa, start, end, lowest, fn);
      }
    }
  }

  // Every per-page SEAMCALL and guest access walks to a 4K entry, most of
  // them in the 2M region the thread's last walk reached: the thread
  // remembers that region's last-level table with the generation of the
  // tree's paths it found it in. Any change that can move a path (a
  // non-leaf entry written or made, a table added over another or
  // dropped, a new root) takes a new generation. Generations come from one
  // counter for all trees, so a tree never meets another's memory, even
  // one built where a dead tree was. Every such change runs with the
  // model's lock held exclusively, every walk with it held at least shared.
  void paths_changed() const;
  mutable std::atomic<uint64_t> gen_;

  int levels_;
  Pfn root_ = kInvalidPfn;
  // Every walk starts here: a hash lookup of the root per call was more
  // than any other single cost of a per-page SEAMCALL's walk.
  SeptTable* root_table_ = nullptr;
  std::unordered_map<uint64_t, std::unique_ptr<SeptTable>> tables_;
  CacheFlaw flaw_ = CacheFlaw::None;
  std::vector<std::unique_ptr<SeptTable>> parked_;  // KeepOnRemove only
};

inline void SeptWalk::set(sept::Word e) const {
  std::atomic_ref<sept::Word> a(raw());
  const sept::Word old = a.load(std::memory_order_relaxed);
  table->tree->wrote(old, e);
  a.store((e & ~sept::kLockBit) | (old & sept::kLockBit), std::memory_order_release);
}

}  // namespace mirrormmu::tdx
