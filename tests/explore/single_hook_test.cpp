// SPDX-License-Identifier: MIT
// Option 2 of the seed thread (the single-hook design): the S-EPT page of a
// removed table is reclaimed through set_external_spte *after*
// handle_removed_pt() queued the table for call_rcu. That is safe only while
// the caller holds the RCU read lock across handle_changed_spte(). Under the
// deterministic engine a grace period ends as soon as no reader can see the
// object, so a caller without the read lock lets the RCU callback free the
// table before the hook runs; these tests show the checker tells the two
// apart.
#include <gtest/gtest.h>

#include "explore/strategy.h"
#include "mmu/tdp_mmu.h"
#include "spte/spte.h"
#include "sync/det_engine.h"
#include "sync/rcu.h"

namespace mirrormmu::test {
namespace {

// Succeeds at everything and, like TDX, looks at the child sp of a removed
// table to find its S-EPT page.
class ReclaimingExternal final : public ExternalOps {
 public:
  explicit ReclaimingExternal(PfnPool& pool) : pool_(pool) {}
  int link_external_spt(Gfn, PgLevel, Pfn) override { return 0; }
  int set_external_spte(Gfn, PgLevel, uint64_t) override { return 0; }
  void remove_external_spte(Gfn, PgLevel, uint64_t) override {}
  int free_external_spt(Gfn, PgLevel, Pfn) override { return 0; }
  int set_external_spte(Gfn, uint64_t old_spte, uint64_t new_spte, PgLevel level) override {
    if (spte::is_nonleaf(old_spte, level) && !spte::is_shadow_present(new_spte)) {
      const MmuPage* child = spte_to_child_sp(pool_, old_spte);
      if (child && child->external_spt.valid()) reclaimed++;
    }
    return 0;
  }
  int reclaimed = 0;

 private:
  PfnPool& pool_;
};

struct Outcome {
  uint64_t reclaim_without_rcu = 0;
  uint64_t freed_before_reclaim = 0;
  int reclaimed = 0;
};

// Maps one private page, then removes the 2M-level table above it with
// tdp_mmu_set_spte() under the exclusive lock, with or without the RCU read
// lock held across the call.
Outcome remove_table(const char* design, bool hold_rcu) {
  PfnPool pool(1u << 14);
  BugTracker kvm;
  Outcome out;
  explore::ReplayStrategy strat({});
  sync::DetEngine e(strat, {});
  e.spawn("vmm", [&] {
    TdpMmuConfig c;
    c.has_mirrored_tdp = true;
    c.gfn_direct_bits = 1ull << (47 - kPageShift);
    c.max_gfn_exclusive = 1ull << (48 - kPageShift);
    TdpMmu mmu(pool, kvm, c);
    ReclaimingExternal ext(pool);
    mmu.set_external(&ext, find_design(design)->make());
    VcpuMmuCaches caches(pool);
    ASSERT_EQ(mmu.mmu_topup_memory_caches(caches), 0);
    MmuPage* direct = mmu.kvm_tdp_mmu_alloc_root(caches, false);
    MmuPage* mirror = mmu.kvm_tdp_mmu_alloc_root(caches, true);
    const Gfn gfn{0x1234};
    KvmPageFault f;
    f.gfn = gfn;
    f.addr = gfn.gpa();
    f.is_private = true;
    f.write = true;
    f.pfn = Pfn{0x2000};
    {
      sync::ReadGuard lock(mmu.mmu_lock());
      ASSERT_EQ(mmu.kvm_tdp_mmu_map(caches, direct, mirror, f), RetPf::Fixed);
    }
    {
      sync::WriteGuard lock(mmu.mmu_lock());
      uint64_t* sptep = nullptr;
      MmuPage* sp = nullptr;
      uint64_t old = 0;
      {
        sync::RcuReadGuard rcu;
        for (TdpIter it(pool, mirror, PgLevel::k2M, gfn, 0); it.valid; it.next())
          if (it.level == PgLevel::k2M) {
            sptep = it.sptep;
            sp = it.sp();
            old = it.old_spte;
            break;
          }
      }
      ASSERT_TRUE(sptep && spte::is_nonleaf(old, PgLevel::k2M));
      const Gfn base = gfn_round_for_level(gfn, PgLevel::k2M);
      if (hold_rcu) sync::rcu_read_lock();
      mmu.tdp_mmu_set_spte(sp, sptep, old, spte::kNonPresent, base, PgLevel::k2M);
      if (hold_rcu) sync::rcu_read_unlock();
    }
    out.reclaim_without_rcu = kvm.hits(Site::reclaim_without_rcu);
    out.freed_before_reclaim = kvm.hits(Site::free_sp_external_live);
    out.reclaimed = ext.reclaimed;
    mmu.kvm_tdp_mmu_put_root(direct);
    mmu.kvm_tdp_mmu_put_root(mirror);
    caches.free_all();
    mmu.kvm_mmu_uninit_tdp_mmu();
  });
  EXPECT_TRUE(e.run()) << e.abort_reason();
  // Whatever the order, every page comes back once the MMU is gone.
  EXPECT_EQ(pool.in_use(), 0u);
  EXPECT_EQ(pool.violations(), 0u);
  return out;
}

// Option 2 on the RFC v5 layer (single-hook) and on the merged one
// (upstream-rcu): the same reliance on the caller's read lock.
class OptionTwo : public ::testing::TestWithParam<const char*> {};

TEST_P(OptionTwo, ReclaimAfterCallRcuIsSafeUnderTheReadLock) {
  const Outcome o = remove_table(GetParam(), true);
  EXPECT_EQ(o.reclaim_without_rcu, 0u);
  EXPECT_EQ(o.freed_before_reclaim, 0u);
  EXPECT_EQ(o.reclaimed, 1);
}

TEST_P(OptionTwo, WithoutTheReadLockTheTableIsFreedBeforeItsReclaim) {
  const Outcome o = remove_table(GetParam(), false);
  // RCU_LOCKDEP_WARN in the design, and the RCU callback finding an S-EPT
  // page the module still holds: the grace period ended between call_rcu and
  // the reclaim.
  EXPECT_EQ(o.reclaim_without_rcu, 1u);
  EXPECT_EQ(o.freed_before_reclaim, 1u);
}

INSTANTIATE_TEST_SUITE_P(Designs, OptionTwo, ::testing::Values("single-hook", "upstream-rcu"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

}  // namespace
}  // namespace mirrormmu::test
