// SPDX-License-Identifier: MIT
#include <gtest/gtest.h>

#include "fake_external.h"

namespace mirrormmu::test {
namespace {

using namespace spte;

TEST(TdpMmu, PrivateFaultLinksParentsFirstThenSetsLeaf) {
  MmuFixture fx;
  const Gfn gfn{0x12345};
  ASSERT_EQ(fx.fault(gfn, Pfn{0x777}, true), RetPf::Fixed);
  // 4-level root: three tables (1G, 2M, 4K entries) are linked top-down,
  // each through link_external_spt at the level of the entry that points at
  // it, then the leaf goes through set_external_spte; all under the shared lock.
  ASSERT_EQ(fx.ext.events.size(), 4u);
  const PgLevel want[] = {PgLevel::k512G, PgLevel::k1G, PgLevel::k2M};
  for (int i = 0; i < 3; i++) {
    EXPECT_EQ(fx.ext.events[i].kind, HookKind::LinkExternalSpt);
    EXPECT_EQ(fx.ext.events[i].level, want[i]);
    EXPECT_FALSE(fx.ext.events[i].write_locked);
  }
  EXPECT_EQ(fx.ext.events[3].kind, HookKind::SetExternalSpte);
  EXPECT_EQ(fx.ext.events[3].gfn, gfn);
  const uint64_t leaf = fx.spte_at(fx.mirror, gfn, PgLevel::k4K);
  EXPECT_TRUE(is_leaf(leaf, PgLevel::k4K));
  EXPECT_EQ(to_pfn(leaf), Pfn{0x777});
  EXPECT_EQ((leaf & kRwx), kRwx);
  EXPECT_EQ(fx.mmu.stats().pages(0), 1);
  EXPECT_EQ(fx.mmu.stats().tdp_mmu_pages.load(), 3);
  // The direct root is untouched by a private fault.
  EXPECT_EQ(fx.spte_at(fx.direct, gfn, PgLevel::k4K), kNonPresent);
}

TEST(TdpMmu, SharedFaultUsesDirectRootAndNoHooks) {
  MmuFixture fx;
  ASSERT_EQ(fx.fault(Gfn{0x400}, Pfn{0x900}, false), RetPf::Fixed);
  EXPECT_TRUE(fx.ext.events.empty());
  EXPECT_TRUE(is_leaf(fx.spte_at(fx.direct, Gfn{0x400}, PgLevel::k4K), PgLevel::k4K));
  EXPECT_EQ(fx.spte_at(fx.mirror, Gfn{0x400}, PgLevel::k4K), kNonPresent);
}

TEST(TdpMmu, SecondFaultOnMappedGfnIsSpurious) {
  MmuFixture fx;
  ASSERT_EQ(fx.fault(Gfn{7}, Pfn{0x700}, true), RetPf::Fixed);
  const size_t hooks = fx.ext.events.size();
  EXPECT_EQ(fx.fault(Gfn{7}, Pfn{0x700}, true), RetPf::Spurious);
  EXPECT_EQ(fx.ext.events.size(), hooks);
}

TEST(TdpMmu, FailedSetHookRestoresMirrorEntryAndStats) {
  MmuFixture fx;
  fx.ext.set_results = {-EBUSY};
  EXPECT_EQ(fx.fault(Gfn{9}, Pfn{0x900}, true), RetPf::Retry);
  // The tables were linked, but the leaf is exactly as before: non-present,
  // not frozen, not counted.
  EXPECT_EQ(fx.spte_at(fx.mirror, Gfn{9}, PgLevel::k4K), kNonPresent);
  EXPECT_EQ(fx.mmu.stats().pages(0), 0);
  // The retry succeeds and links nothing new.
  fx.ext.events.clear();
  EXPECT_EQ(fx.fault(Gfn{9}, Pfn{0x900}, true), RetPf::Fixed);
  ASSERT_EQ(fx.ext.events.size(), 1u);
  EXPECT_EQ(fx.ext.events[0].kind, HookKind::SetExternalSpte);
}

TEST(TdpMmu, FailedLinkFreesTheUnusedTable) {
  MmuFixture fx;
  const uint64_t tables_before = fx.pool.count(PageOwner::PageTable) + fx.caches.shadow_page_cache.nobjs();
  fx.ext.link_results = {-EBUSY};
  EXPECT_EQ(fx.fault(Gfn{0x42}, Pfn{0x900}, true), RetPf::Retry);
  EXPECT_EQ(fx.spte_at(fx.mirror, Gfn{0x42}, PgLevel::k512G), kNonPresent);
  EXPECT_EQ(fx.mmu.stats().tdp_mmu_pages.load(), 0);
  // Freed at once (never reachable): the pool holds one table page less than
  // the cache handed out.
  EXPECT_LT(fx.pool.count(PageOwner::PageTable), tables_before);
  EXPECT_EQ(fx.pool.violations(), 0u);
}

TEST(TdpMmu, FrozenEntryMakesFaultRetryWithoutAllocating) {
  MmuFixture fx;
  ASSERT_EQ(fx.fault(Gfn{0x10}, Pfn{0x500}, true), RetPf::Fixed);
  // Freeze the neighbouring leaf as a concurrent fault would.
  uint64_t* sptep;
  {
    sync::RcuReadGuard rcu;
    TdpIter it(fx.pool, fx.mirror, PgLevel::k4K, Gfn{0x11}, 0);
    while (it.level != PgLevel::k4K) it.next();
    sptep = it.sptep;
  }
  sync::write_spte(sptep, kFrozen);
  const int cache_before = fx.caches.shadow_page_cache.nobjs();
  EXPECT_EQ(fx.fault(Gfn{0x11}, Pfn{0x501}, true), RetPf::Retry);
  EXPECT_EQ(fx.caches.shadow_page_cache.nobjs(), cache_before);
  sync::write_spte(sptep, kNonPresent);
  EXPECT_EQ(fx.fault(Gfn{0x11}, Pfn{0x501}, true), RetPf::Fixed);
}

TEST(TdpMmu, LeafZapRemovesExternalLeavesUnderWriteLock) {
  MmuFixture fx;
  for (uint64_t g = 0; g < 4; g++) ASSERT_EQ(fx.fault(Gfn{g}, Pfn{0x100 + g}, true), RetPf::Fixed);
  fx.ext.events.clear();
  {
    sync::WriteGuard lock(fx.mmu.mmu_lock());
    fx.mmu.kvm_tdp_mmu_unmap_gfn_range({Gfn{1}, Gfn{3}, GfnFilter::Private, true}, false);
  }
  ASSERT_EQ(fx.ext.events.size(), 2u);
  for (const auto& e : fx.ext.events) {
    EXPECT_EQ(e.kind, HookKind::RemoveExternalSpte);
    EXPECT_TRUE(e.write_locked);
  }
  EXPECT_EQ(fx.ext.events[0].gfn, Gfn{1});
  EXPECT_EQ(fx.ext.events[1].gfn, Gfn{2});
  EXPECT_EQ(fx.mmu.stats().pages(0), 2);
  // Tables stay: leaf zaps never free page tables.
  EXPECT_EQ(fx.mmu.stats().tdp_mmu_pages.load(), 3);
}

TEST(TdpMmu, SharedFilterLeavesMirrorAlone) {
  MmuFixture fx;
  ASSERT_EQ(fx.fault(Gfn{5}, Pfn{0x105}, true), RetPf::Fixed);
  ASSERT_EQ(fx.fault(Gfn{5}, Pfn{0x205}, false), RetPf::Fixed);
  fx.ext.events.clear();
  {
    sync::WriteGuard lock(fx.mmu.mmu_lock());
    fx.mmu.kvm_tdp_mmu_unmap_gfn_range({Gfn{0}, Gfn{16}, GfnFilter::Shared, true}, false);
  }
  EXPECT_TRUE(fx.ext.events.empty());
  EXPECT_TRUE(is_leaf(fx.spte_at(fx.mirror, Gfn{5}, PgLevel::k4K), PgLevel::k4K));
  EXPECT_EQ(fx.spte_at(fx.direct, Gfn{5}, PgLevel::k4K), kNonPresent);
}

TEST(TdpMmu, TeardownRemovesChildrenBeforeReclaimingParents) {
  MmuFixture fx;
  ASSERT_EQ(fx.fault(Gfn{0x200}, Pfn{0x300}, true), RetPf::Fixed);
  ASSERT_EQ(fx.fault(Gfn{0x40000}, Pfn{0x301}, true), RetPf::Fixed);  // another 1G region
  fx.ext.events.clear();
  fx.teardown();
  // Post-order on the external side: every removal or reclaim of an entry
  // under a table comes before the reclaim of that table.
  std::vector<HookEvent> frees;
  for (size_t i = 0; i < fx.ext.events.size(); i++) {
    const auto& e = fx.ext.events[i];
    EXPECT_TRUE(e.write_locked);
    if (e.kind != HookKind::FreeExternalSpt) continue;
    for (size_t j = i + 1; j < fx.ext.events.size(); j++) {
      const auto& later = fx.ext.events[j];
      const bool inside = later.level < e.level && later.gfn >= e.gfn &&
                          later.gfn < e.gfn + pages_per_hpage(higher(e.level));
      EXPECT_FALSE(inside) << "table at level " << lvl(e.level) << " reclaimed before a child";
    }
  }
  EXPECT_EQ(fx.ext.count(HookKind::RemoveExternalSpte), 2u);
  // One table of 1G entries shared by both, then a 2M-entry and a 4K-entry
  // table for each of the two 1G regions.
  EXPECT_EQ(fx.ext.count(HookKind::FreeExternalSpt), 5u);
  EXPECT_EQ(fx.mmu.stats().tdp_mmu_pages.load(), 0);
  EXPECT_EQ(fx.pool.in_use(), 0u);
}

TEST(TdpMmu, FailedReclaimLeaksTheExternalPageOnPurpose) {
  MmuFixture fx;
  ASSERT_EQ(fx.fault(Gfn{0x200}, Pfn{0x300}, true), RetPf::Fixed);
  fx.ext.free_results = {-EIO};
  fx.teardown();
  EXPECT_EQ(fx.kvm.hits(Site::free_external_spt_failed), 1u);
  // Exactly one S-EPT page never returns to the pool.
  EXPECT_EQ(fx.pool.in_use(), 1u);
  EXPECT_EQ(fx.pool.count(PageOwner::SeptPage), 1u);
}

TEST(TdpMmu, DirectHugePageSplitsOnSmallerFault) {
  MmuFixture fx;
  ASSERT_EQ(fx.fault(Gfn{0x200}, Pfn{0x400}, false, PgLevel::k2M), RetPf::Fixed);
  EXPECT_EQ(fx.mmu.stats().pages(1), 1);
  // A write-protected 4K fault in it (dirty logging) splits the 2M leaf.
  ASSERT_EQ(fx.fault(Gfn{0x201}, Pfn{0x401}, false, PgLevel::k4K), RetPf::Spurious);
  EXPECT_EQ(fx.mmu.stats().pages(1), 0);
  EXPECT_EQ(fx.mmu.stats().pages(0), 512);
  for (uint64_t i = 0; i < 512; i += 97)
    EXPECT_EQ(to_pfn(fx.spte_at(fx.direct, Gfn{0x200 + i}, PgLevel::k4K)), Pfn{0x400 + i});
}

TEST(TdpMmu, MirrorHugeSplitInFaultPathBugsTheVm) {
  MmuFixture fx;
  // Plant a 2M mirror leaf by hand (the baseline never creates one) in a
  // 2M region next to a mapped page.
  ASSERT_EQ(fx.fault(Gfn{0x200}, Pfn{0x400}, true), RetPf::Fixed);
  uint64_t* pde;
  {
    sync::RcuReadGuard rcu;
    TdpIter it(fx.pool, fx.mirror, PgLevel::k2M, Gfn{0x400}, 0);
    while (it.level != PgLevel::k2M) it.next();
    pde = it.sptep;
  }
  sync::write_spte(pde, make_leaf(Pfn{0x800}, PgLevel::k2M));
  fx.mmu.kvm_update_page_stats(PgLevel::k2M, 1);
  EXPECT_EQ(fx.fault(Gfn{0x401}, Pfn{0x801}, true), RetPf::Retry);
  EXPECT_EQ(fx.kvm.hits(Site::map_mirror_split), 1u);
  EXPECT_TRUE(fx.kvm.bugged());
  sync::write_spte(pde, kNonPresent);
  fx.mmu.kvm_update_page_stats(PgLevel::k2M, -1);
}

TEST(TdpMmu, ZapWithoutWriteLockIsALockdepSplat) {
  MmuFixture fx;
  {
    sync::ReadGuard lock(fx.mmu.mmu_lock());
    fx.mmu.kvm_tdp_mmu_zap_leafs(Gfn{0}, Gfn{16}, false);
  }
  EXPECT_GE(fx.kvm.hits(Site::lockdep_not_write), 1u);
}

TEST(TdpMmu, LeafPfnChangeWithoutZapIsABug) {
  MmuFixture fx;
  ASSERT_EQ(fx.fault(Gfn{3}, Pfn{0x103}, false), RetPf::Fixed);
  sync::WriteGuard lock(fx.mmu.mmu_lock());
  fx.mmu.handle_changed_spte(fx.direct, Gfn{3}, make_leaf(Pfn{0x103}, PgLevel::k4K),
                             make_leaf(Pfn{0x999}, PgLevel::k4K), PgLevel::k4K, false);
  EXPECT_EQ(fx.kvm.hits(Site::changed_spte_leaf_pfn), 1u);
}

// handle_changed_spte() takes a short way for something installed where
// nothing was, outside the mirror: the leaf is counted, and a gfn or level
// that cannot be right still sends it the long way, to warn.
TEST(TdpMmu, AnInstallOnTheShortWayCountsTheLeafAndStillWarnsWhenItIsWrong) {
  MmuFixture fx;
  sync::WriteGuard lock(fx.mmu.mmu_lock());
  const int64_t before = fx.mmu.stats().pages(0);
  fx.mmu.handle_changed_spte(fx.direct, Gfn{8}, kNonPresent, make_leaf(Pfn{0x108}, PgLevel::k4K), PgLevel::k4K,
                             false);
  EXPECT_EQ(fx.mmu.stats().pages(0), before + 1);
  EXPECT_EQ(fx.kvm.hits(Site::changed_spte_unaligned), 0u);
  // A 2M leaf at a gfn that is not 2M-aligned.
  fx.mmu.handle_changed_spte(fx.direct, Gfn{3}, kNonPresent, make_leaf(Pfn{0x200}, PgLevel::k2M), PgLevel::k2M,
                             false);
  EXPECT_EQ(fx.kvm.hits(Site::changed_spte_unaligned), 1u);
  // A level past the root's.
  fx.mmu.handle_changed_spte(fx.direct, Gfn{0}, kNonPresent, make_leaf(Pfn{0x300}, PgLevel::k4K),
                             static_cast<PgLevel>(kRootMaxLevel + 1), false);
  EXPECT_EQ(fx.kvm.hits(Site::changed_spte_bad_level), 1u);
}

// tdp_mmu_map_handle_target_level(): a present leaf that already allows the
// access is left alone; one for another pfn is a WARN (an invalidation
// should have zapped it first), never a silent pfn change.
TEST(TdpMmu, FaultOverALeafForAnotherPfnWarnsAndLeavesIt) {
  MmuFixture fx;
  ASSERT_EQ(fx.fault(Gfn{3}, Pfn{0x103}, false), RetPf::Fixed);
  const uint64_t before = fx.spte_at(fx.direct, Gfn{3}, PgLevel::k4K);
  EXPECT_EQ(fx.fault(Gfn{3}, Pfn{0x999}, false), RetPf::Spurious);
  EXPECT_EQ(fx.kvm.hits(Site::map_spurious_pfn), 1u);
  EXPECT_EQ(fx.kvm.hits(Site::changed_spte_leaf_pfn), 0u);
  EXPECT_EQ(fx.spte_at(fx.direct, Gfn{3}, PgLevel::k4K), before);
}

// A writable leaf is made Dirty at once, even for a read fault; a write
// fault over a read-only leaf of the same page upgrades it.
TEST(TdpMmu, WritableLeavesAreBornDirty) {
  MmuFixture fx;
  ASSERT_EQ(fx.fault(Gfn{4}, Pfn{0x104}, false, PgLevel::k4K, false), RetPf::Fixed);
  const uint64_t s = fx.spte_at(fx.direct, Gfn{4}, PgLevel::k4K);
  EXPECT_TRUE(is_writable(s));
  EXPECT_TRUE(is_dirty(s));
}

// A 2M fault over a present table replaces it and must flush: the small
// translations below it are stale.
TEST(TdpMmu, HugeLeafOverATableFlushes) {
  MmuFixture fx;
  ASSERT_EQ(fx.fault(Gfn{0x200}, Pfn{0x200}, false), RetPf::Fixed);
  const uint64_t flushes = fx.mmu.stats().remote_tlb_flushes.load();
  EXPECT_EQ(fx.fault(Gfn{0x200}, Pfn{0x200}, false, PgLevel::k2M), RetPf::Fixed);
  EXPECT_TRUE(is_leaf(fx.spte_at(fx.direct, Gfn{0x200}, PgLevel::k2M), PgLevel::k2M));
  EXPECT_EQ(fx.mmu.stats().remote_tlb_flushes.load(), flushes + 1);
}

// Dirty logging without PML: enabling write-protects leaves and clears
// MMU-writable (only a fault may make them writable again, and it marks the
// page dirty); harvesting clears PT_WRITABLE alone, leaving Dirty and
// MMU-writable as they were, and bypasses the change handling.
TEST(TdpMmu, DirtyLogBitsAsKvmClearsThem) {
  MmuFixture fx;
  ASSERT_EQ(fx.fault(Gfn{5}, Pfn{0x105}, false), RetPf::Fixed);
  ASSERT_EQ(fx.fault(Gfn{6}, Pfn{0x106}, false), RetPf::Fixed);
  {
    sync::ReadGuard lock(fx.mmu.mmu_lock());
    EXPECT_TRUE(fx.mmu.kvm_tdp_mmu_wrprot_slot(Gfn{5}, Gfn{6}, PgLevel::k4K));
  }
  const uint64_t wp = fx.spte_at(fx.direct, Gfn{5}, PgLevel::k4K);
  // wrprot_gfn_range() clears Writable only: MMU-writable stays for
  // fast_page_fault (the kernel oracle's differential test found the model
  // clearing both).
  EXPECT_FALSE(is_writable(wp));
  EXPECT_TRUE(is_mmu_writable(wp));
  const uint64_t before = fx.spte_at(fx.direct, Gfn{6}, PgLevel::k4K);
  {
    sync::WriteGuard lock(fx.mmu.mmu_lock());
    fx.mmu.kvm_tdp_mmu_clear_dirty_pt_masked(Gfn{0}, 1ull << 6);
  }
  const uint64_t harvested = fx.spte_at(fx.direct, Gfn{6}, PgLevel::k4K);
  EXPECT_EQ(harvested, before & ~kWritable);
  EXPECT_TRUE(is_dirty(harvested));
  EXPECT_TRUE(is_mmu_writable(harvested));
}

TEST(TdpMmu, YieldingZapRestartsAndStillZapsEverything) {
  MmuFixture fx;
  for (uint64_t g = 0; g < 2048; g += 3) ASSERT_EQ(fx.fault(Gfn{g}, Pfn{0x1000 + g}, true), RetPf::Fixed);
  const int64_t mapped = fx.mmu.stats().pages(0);
  fx.mmu.set_resched_interval(7);
  fx.ext.events.clear();
  {
    sync::WriteGuard lock(fx.mmu.mmu_lock());
    fx.mmu.kvm_tdp_mmu_unmap_gfn_range({Gfn{0}, Gfn{2048}, GfnFilter::Private, true}, false);
  }
  EXPECT_GT(fx.mmu.stats().yields.load(), 10u);
  EXPECT_EQ(fx.ext.count(HookKind::RemoveExternalSpte), static_cast<size_t>(mapped));
  EXPECT_EQ(fx.mmu.stats().pages(0), 0);
}

}  // namespace
}  // namespace mirrormmu::test
