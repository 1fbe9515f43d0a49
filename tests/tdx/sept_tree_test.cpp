// SPDX-License-Identifier: MIT
// The S-EPT tree's walks follow child pointers cached in the parent table.
// Two sequences break a cache like that: SEPT.REMOVE then SEPT.ADD at the
// same frame (the slot must not keep the old table), and an entry pointed
// at another live table (the cached one must be checked against the
// entry). A third breaks the walk cache (the last 4K walk's table, per
// thread): a path that changes under it, as a BLOCK of a non-leaf entry
// does. Each is run clean and with its classic bug planted, to show the
// checks here would see the bug.
#include <gtest/gtest.h>

#include "tdx/sept_tree.h"

namespace mirrormmu::tdx {
namespace {

constexpr Pfn kRoot{100}, kL2{200}, kL1{300}, kLeafA{400}, kLeafB{500};
constexpr uint64_t kGpa = 0x5000;
constexpr Pfn kGuestPage{7000};

// Entries are written as the module writes them, through the tree, which
// the walk cache relies on.
void set(SeptTree& t, Pfn table, int level, sept::Word e) { t.set_entry(*t.find(table), sept::entry_index(kGpa, level), e); }

void link(SeptTree& t, Pfn parent, int level, Pfn child) { set(t, parent, level, sept::make_entry(SeptState::NlMapped, child)); }

// root (level 3) -> 200 (2) -> 300 (1) -> leaf table at `leaf` (0).
void build(SeptTree& t, Pfn leaf) {
  t.create_root(kRoot);
  t.add_table(kL2, 2);
  link(t, kRoot, 3, kL2);
  t.add_table(kL1, 1);
  link(t, kL2, 2, kL1);
  t.add_table(leaf, 0);
  link(t, kL1, 1, leaf);
}

// Where a walk to the 4K entry of kGpa lands is the table the tree holds
// at `leaf`, and the entry the walk reads is the one written there.
::testing::AssertionResult walk_lands_in(const SeptTree& t, Pfn leaf) {
  const SeptWalk w = t.walk(kGpa, 0);
  if (!w.reached) return ::testing::AssertionFailure() << "walk stopped at level " << w.level;
  if (w.table != t.find(leaf))
    return ::testing::AssertionFailure() << "walk reached a table the tree does not hold at frame " << leaf.v;
  if (w.pfn() != kGuestPage) return ::testing::AssertionFailure() << "walk read an entry nobody wrote";
  return ::testing::AssertionSuccess();
}

void map_guest_page(SeptTree& t, Pfn leaf) { set(t, leaf, 0, sept::make_entry(SeptState::Mapped, kGuestPage)); }

// The tree every sequence below starts from, with `flaw` planted: a guest
// page mapped through the leaf table at kLeafA, and a first walk landing
// there (which fills the caches the sequence then tries to mislead).
::testing::AssertionResult start(SeptTree& t, SeptTree::CacheFlaw flaw) {
  t.plant_flaw(flaw);
  build(t, kLeafA);
  map_guest_page(t, kLeafA);
  return walk_lands_in(t, kLeafA);
}

// SEPT.REMOVE of the leaf table, then SEPT.ADD of a table at the same
// frame (the host reuses the page it got back).
::testing::AssertionResult readd_at_freed_frame(SeptTree::CacheFlaw flaw) {
  SeptTree t(4);
  if (auto r = start(t, flaw); !r) return r << " (before the remove)";
  set(t, kL1, 1, 0);
  t.remove_table(kLeafA);
  t.add_table(kLeafA, 0);
  link(t, kL1, 1, kLeafA);
  map_guest_page(t, kLeafA);
  return walk_lands_in(t, kLeafA);
}

// The entry moves from one live table to another, as a parent re-pointed
// by a promote or a demote of its neighbourhood.
::testing::AssertionResult entry_repointed(SeptTree::CacheFlaw flaw) {
  SeptTree t(4);
  t.plant_flaw(flaw);
  build(t, kLeafA);
  t.add_table(kLeafB, 0);
  if (t.walk(kGpa, 0).table != t.find(kLeafA)) return ::testing::AssertionFailure() << "first walk missed";
  link(t, kL1, 1, kLeafB);
  map_guest_page(t, kLeafB);
  return walk_lands_in(t, kLeafB);
}

TEST(SeptTreeCache, WalksFollowTheEntryAfterRemoveAndReadd) {
  EXPECT_TRUE(readd_at_freed_frame(SeptTree::CacheFlaw::None));
  EXPECT_TRUE(entry_repointed(SeptTree::CacheFlaw::None));
}

// Also what for_each (the checker's view) reports: the new table's entry.
TEST(SeptTreeCache, ForEachSeesTheReaddedTable) {
  SeptTree t(4);
  build(t, kLeafA);
  (void)t.walk(kGpa, 0);
  t.remove_table(kLeafA);
  t.add_table(kLeafA, 0);
  map_guest_page(t, kLeafA);
  int leaves = 0;
  t.for_each([&](uint64_t gpa, int level, uint64_t e) {
    if (level != 0) return;
    leaves++;
    EXPECT_EQ(gpa, kGpa);
    EXPECT_EQ(sept::pfn_of(e), kGuestPage);
  });
  EXPECT_EQ(leaves, 1);
}

// Entries are 32-bit words: every frame a pool the module accepts can have
// round-trips through one, with its state and without the lock bit.
TEST(SeptEntry, LargestFrameRoundTrips) {
  const Pfn last{sept::kMaxFrames - 1};
  for (const SeptState s : {SeptState::Mapped, SeptState::PendingBlocked, SeptState::NlMapped}) {
    const sept::Word e = sept::make_entry(s, last);
    EXPECT_EQ(sept::pfn_of(e), last);
    EXPECT_EQ(sept::state_of(e), s);
    EXPECT_EQ(e & sept::kLockBit, 0u);
    EXPECT_EQ(sept::pfn_of(sept::with_state(e | sept::kLockBit, SeptState::Blocked)), last);
    if (s != SeptState::NlMapped) {  // the module shows a leaf's HPA, never a table's
      EXPECT_EQ(sept::arch_entry(e, 0) & ~uint64_t{0xfff} & ((uint64_t{1} << 52) - 1), last.hpa());
    }
  }
  EXPECT_EQ(sept::pfn_of(0), kInvalidPfn);
}

// A walk to the 4K entry, then a BLOCK of the 2M entry above it (the first
// step of removing that S-EPT page): the next walk stops at the blocked
// entry, as the module's does, instead of coming back with the table the
// last walk found. Then an UNBLOCK, and the walk reaches the table again.
::testing::AssertionResult walk_sees_parent_blocked(SeptTree::CacheFlaw flaw) {
  SeptTree t(4);
  if (auto r = start(t, flaw); !r) return r << " (before the block)";
  set(t, kL1, 1, sept::make_entry(SeptState::NlBlocked, kLeafA));
  const SeptWalk w = t.walk(kGpa, 0);
  if (w.reached || w.level != 1 || w.state() != SeptState::NlBlocked)
    return ::testing::AssertionFailure() << "walk went through a blocked entry (reached " << w.reached << ", level "
                                         << w.level << ")";
  set(t, kL1, 1, sept::make_entry(SeptState::NlMapped, kLeafA));
  return walk_lands_in(t, kLeafA) << " (after the unblock)";
}

TEST(SeptTreeWalkCache, AWalkAfterItsPathChangedFollowsTheNewPath) {
  EXPECT_TRUE(walk_sees_parent_blocked(SeptTree::CacheFlaw::None));
}

TEST(SeptTreeWalkCache, PlantedStaleCacheIsCaught) {
  EXPECT_FALSE(walk_sees_parent_blocked(SeptTree::CacheFlaw::StaleWalkCache));
}

// Two trees, one thread: a walk of one is never answered from the other's
// memory, even for the same GPA.
TEST(SeptTreeWalkCache, TreesDoNotShareTheCache) {
  SeptTree a(4), b(4);
  build(a, kLeafA);
  map_guest_page(a, kLeafA);
  build(b, kLeafB);
  map_guest_page(b, kLeafB);
  EXPECT_TRUE(walk_lands_in(a, kLeafA));
  EXPECT_TRUE(walk_lands_in(b, kLeafB));
  EXPECT_TRUE(walk_lands_in(a, kLeafA));
}

TEST(SeptTreeCache, PlantedKeepOnRemoveIsCaught) {
  EXPECT_FALSE(readd_at_freed_frame(SeptTree::CacheFlaw::KeepOnRemove));
}

TEST(SeptTreeCache, PlantedTrustCacheIsCaught) {
  EXPECT_FALSE(entry_repointed(SeptTree::CacheFlaw::TrustCache));
}

}  // namespace
}  // namespace mirrormmu::tdx
