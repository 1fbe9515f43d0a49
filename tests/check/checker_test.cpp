// SPDX-License-Identifier: MIT
// The checker must see what it claims to check. Each test builds a small TD
// through the Vm API, makes sure the checker finds it clean, plants exactly
// one corruption behind the MMU's back and asserts that the checker names
// the invariant that was broken. A blind checker fails every test here.
//
// Plants that would derail teardown are undone afterwards, and the test then
// also asserts that the state is clean again and the VM tears down without a
// leak, which shows the plant was the only thing wrong.
//
// Every test runs with full and with incremental checking. An incremental
// check sees a plant nobody told it about (these are all behind the MMU's
// back) at its next full pass, which comes at most kFullEvery checks later:
// the helper allows it that many.
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "check/checker.h"
#include "check/transitions.h"
#include "mmu/mmu_page.h"
#include "mmu/tdp_iter.h"
#include "spte/spte.h"
#include "sync/mmu_lock.h"
#include "sync/rcu.h"
#include "sync/spte_atomic.h"
#include "tdx/module.h"
#include "vm/vm.h"

namespace mirrormmu::test {
namespace {

constexpr uint64_t kRamGpa = 1ull << 32;  // slot 0: guest RAM with guest_memfd
constexpr uint64_t kRamSize = 4ull << 20;
constexpr uint64_t kBufGpa = 1ull << 30;  // slot 1: shared-only
constexpr uint64_t kBufSize = 2ull << 20;
constexpr uint64_t kPrivatePages = 16;    // made private at the start of slot 0
constexpr uint64_t kTouchedPrivate = 8;   // of which the guest touches these
constexpr uint64_t kTouchedShared = 8;    // touched through the shared alias, per slot

constexpr uint64_t kFullEvery = 4;

class CheckerTest : public ::testing::TestWithParam<CheckMode> {
 protected:
  void SetUp() override {
    VmConfig cfg;
    cfg.type = VmType::Td;
    cfg.pool_pages = 1ull << 15;
    cfg.nr_vcpus = 2;
    vm_ = std::make_unique<Vm>(cfg);
    ASSERT_EQ(vm_->create(), 0);
    // Attached before anything is mapped, so it sees every transition.
    CheckerOptions opts;
    opts.mode = GetParam();
    opts.full_every = kFullEvery;
    ck_ = std::make_unique<Checker>(*vm_, opts);
    ASSERT_EQ(vm_->add_memslot(0, kRamGpa, kRamSize, kMemGuestMemfd), 0);
    ASSERT_EQ(vm_->add_memslot(1, kBufGpa, kBufSize, 0), 0);
    ASSERT_EQ(vm_->finalize(), 0);
    ASSERT_EQ(vm_->set_memory_attributes(kRamGpa, kPrivatePages * kPageSize, true), 0);
    const uint64_t shared = vm_->shared_gpa_bit();
    for (uint64_t i = 0; i < kTouchedPrivate; i++)
      ASSERT_EQ(vm_->vcpu_access(int(i % 2), private_gpa(i), true), ExitReason::None);
    for (uint64_t i = 0; i < kTouchedShared; i++) {
      // Slot 0 past the private pages, and slot 1.
      ASSERT_EQ(vm_->vcpu_access(0, (kRamGpa + (kPrivatePages + i) * kPageSize) | shared, true), ExitReason::None);
      ASSERT_EQ(vm_->vcpu_access(1, (kBufGpa + i * kPageSize) | shared, true), ExitReason::None);
    }
    ASSERT_EQ(ck_->check("populate"), 0u) << dump();
  }

  void TearDown() override {
    if (vm_) vm_->destroy();
    ck_.reset();
    vm_.reset();
  }

  static uint64_t private_gpa(uint64_t page) { return kRamGpa + page * kPageSize; }
  static Gfn private_gfn(uint64_t page) { return Gfn::from_gpa(private_gpa(page)); }

  // Runs `fn` the way the MMU's own exclusive writers do: mmu_lock held for
  // write, inside an RCU read section.
  template <class Fn>
  void with_mmu_lock(Fn&& fn) {
    sync::RcuThread rcu_thread;
    sync::WriteGuard lock(vm_->mmu().mmu_lock());
    sync::RcuReadGuard rcu;
    fn();
  }

  MmuPage* root(bool mirror) {
    MmuPage* r = nullptr;
    vm_->mmu().for_each_root([&](MmuPage* p) {
      if (!r && p->is_mirror() == mirror && !p->role.invalid) r = p;
    });
    return r;
  }

  // The entry at `level` covering `gfn` (un-aliased) in the first valid root
  // of that kind, or null if the walk does not get there. Caller holds the
  // lock (with_mmu_lock).
  uint64_t* sptep(bool mirror, Gfn gfn, PgLevel level) {
    MmuPage* r = root(mirror);
    if (!r) return nullptr;
    for (TdpIter it(vm_->pool(), r, level, gfn, vm_->mmu().kvm_gfn_root_bits(r)); it.valid; it.next())
      if (it.level == level) return it.gfn == gfn_round_for_level(gfn, level) ? it.sptep : nullptr;
    return nullptr;
  }

  // Writes `v` into the entry and returns what was there.
  uint64_t plant(bool mirror, Gfn gfn, PgLevel level, uint64_t v) {
    uint64_t old = 0;
    with_mmu_lock([&] {
      uint64_t* p = sptep(mirror, gfn, level);
      ASSERT_NE(p, nullptr) << "no entry for gfn " << gfn.v;
      old = sync::read_spte(p);
      sync::write_spte(p, v);
    });
    return old;
  }

  uint64_t read(bool mirror, Gfn gfn, PgLevel level) {
    uint64_t v = 0;
    with_mmu_lock([&] {
      uint64_t* p = sptep(mirror, gfn, level);
      ASSERT_NE(p, nullptr);
      v = sync::read_spte(p);
    });
    return v;
  }

  // The host page behind `gfn` in the first valid root of that kind,
  // whatever the level of the leaf that maps it.
  Pfn mapped_pfn(bool mirror, Gfn gfn) {
    Pfn pfn = kInvalidPfn;
    with_mmu_lock([&] {
      MmuPage* r = root(mirror);
      ASSERT_NE(r, nullptr);
      for (TdpIter it(vm_->pool(), r, PgLevel::k4K, gfn, vm_->mmu().kvm_gfn_root_bits(r));
           it.valid && it.gfn <= gfn; it.next()) {
        if (!spte::is_leaf(it.old_spte, it.level)) continue;
        if (gfn - it.gfn < pages_per_hpage(it.level)) pfn = spte::to_pfn(it.old_spte) + (gfn - it.gfn);
        return;
      }
    });
    return pfn;
  }

  // The kvm_mmu_page of the table the entry at (gfn, level) points to.
  MmuPage* child_sp(bool mirror, Gfn gfn, PgLevel level) {
    const uint64_t s = read(mirror, gfn, level);
    EXPECT_TRUE(spte::is_nonleaf(s, level));
    return spte_to_child_sp(vm_->pool(), s);
  }

  // Runs a check and returns the invariants it newly reported.
  std::set<std::string> check(std::string_view what) {
    const size_t before = ck_->violations().size();
    const uint64_t tries = GetParam() == CheckMode::Incremental ? kFullEvery : 1;
    for (uint64_t i = 0; i < tries && ck_->violations().size() == before; i++) ck_->check(what);
    std::set<std::string> names;
    for (size_t i = before; i < ck_->violations().size(); i++) names.insert(ck_->violations()[i].invariant);
    return names;
  }

  std::string dump() const {
    std::string s;
    for (const Violation& v : ck_->violations()) s += "\n  " + v.invariant + ": " + v.detail;
    return s;
  }

  // After an undone plant: nothing left to report over the whole guest (the
  // undo is behind the MMU's back too, so an incremental check would be
  // judging page counts from before it), and a clean teardown.
  void expect_clean_again_and_at_end_of_life() {
    const size_t before_undo = ck_->violations().size();
    ck_->check_full("undo");
    EXPECT_EQ(ck_->violations().size(), before_undo) << dump();
    const size_t before = ck_->violations().size();
    vm_->destroy();
    EXPECT_EQ(ck_->check_end_of_life(), 0u) << dump();
    EXPECT_EQ(ck_->violations().size(), before);
    EXPECT_EQ(vm_->pool().in_use(), 0u);
    EXPECT_EQ(vm_->pool().violations(), 0u);
  }

  std::unique_ptr<Vm> vm_;
  std::unique_ptr<Checker> ck_;
};

TEST_P(CheckerTest, FrozenSpteLeftInAMirrorLeafIsReported) {
  const Gfn gfn = private_gfn(0);
  const uint64_t old = plant(true, gfn, PgLevel::k4K, spte::kFrozen);
  ASSERT_TRUE(spte::is_leaf(old, PgLevel::k4K));
  const auto got = check("plant FROZEN_SPTE");
  EXPECT_TRUE(got.count("frozen_reachable")) << dump();
  plant(true, gfn, PgLevel::k4K, old);
  expect_clean_again_and_at_end_of_life();
}

TEST_P(CheckerTest, MirrorLeafZappedBehindTheMmusBackIsReported) {
  // The S-EPT still maps the page and pages_4k still counts it.
  const Gfn gfn = private_gfn(1);
  const uint64_t old = plant(true, gfn, PgLevel::k4K, spte::kNonPresent);
  const auto got = check("plant zap");
  EXPECT_TRUE(got.count("sept_leaf_unmirrored")) << dump();
  EXPECT_TRUE(got.count("stats_pages")) << dump();
  plant(true, gfn, PgLevel::k4K, old);
  expect_clean_again_and_at_end_of_life();
}

TEST_P(CheckerTest, MirrorLeafPointingAtAnotherPfnIsReported) {
  // Another guest page of the TD: owned right, but not this gfn's backing
  // and not what the S-EPT maps here.
  const Gfn gfn = private_gfn(2);
  const uint64_t other = read(true, private_gfn(3), PgLevel::k4K);
  const uint64_t old = read(true, gfn, PgLevel::k4K);
  ASSERT_NE(spte::to_pfn(other), spte::to_pfn(old));
  plant(true, gfn, PgLevel::k4K, (old & ~spte::kBaseAddrMask) | (other & spte::kBaseAddrMask));
  const auto got = check("plant pfn");
  EXPECT_TRUE(got.count("mirror_sept_leaf")) << dump();
  EXPECT_TRUE(got.count("leaf_backing")) << dump();
  plant(true, gfn, PgLevel::k4K, old);
  expect_clean_again_and_at_end_of_life();
}

TEST_P(CheckerTest, MirrorLeafWithoutSeptLeafIsReported) {
  // A copy of a mapped leaf in the next, never-faulted entry: present in the
  // mirror, absent from the S-EPT.
  const Gfn gfn = private_gfn(kTouchedPrivate);
  const uint64_t leaf = read(true, private_gfn(0), PgLevel::k4K);
  const uint64_t old = plant(true, gfn, PgLevel::k4K, leaf);
  ASSERT_EQ(old, spte::kNonPresent);
  const auto got = check("plant unpropagated leaf");
  EXPECT_TRUE(got.count("mirror_leaf_unpropagated")) << dump();
  plant(true, gfn, PgLevel::k4K, old);
  expect_clean_again_and_at_end_of_life();
}

TEST_P(CheckerTest, MirrorTableUnlinkedBehindTheMmusBackIsReported) {
  // Drop the 2M-level entry linking the private pages' page table: the
  // table is still counted in tdp_mmu_pages and linked in the S-EPT.
  const Gfn gfn = private_gfn(0);
  const uint64_t old = plant(true, gfn, PgLevel::k2M, spte::kNonPresent);
  ASSERT_TRUE(spte::is_nonleaf(old, PgLevel::k2M));
  const auto got = check("plant unlink");
  EXPECT_TRUE(got.count("stats_tdp_mmu_pages")) << dump();
  EXPECT_TRUE(got.count("sept_table_unmirrored")) << dump();
  plant(true, gfn, PgLevel::k2M, old);
  expect_clean_again_and_at_end_of_life();
}

TEST_P(CheckerTest, UnknownSpteFormIsReported) {
  // Not present, not FROZEN, and not MMIO (suppress-#VE is set, so it does
  // not match the TD's MMIO value): an entry no code path writes.
  const uint64_t bogus = spte::kNonPresent | spte::kReadable;
  ASSERT_FALSE(spte::is_mmio(bogus, vm_->mmu().config().mmio_value));
  const Gfn gfn = private_gfn(kTouchedPrivate + 1);
  const uint64_t old = plant(true, gfn, PgLevel::k4K, bogus);
  const auto got = check("plant bogus");
  EXPECT_TRUE(got.count("bad_spte")) << dump();
  plant(true, gfn, PgLevel::k4K, old);
  expect_clean_again_and_at_end_of_life();
}

TEST_P(CheckerTest, PrivateAttributeDroppedUnderAMirrorLeafIsReported) {
  // Userspace-visible state changed without the zap a conversion does.
  Memslot& slot = *vm_->memslots().front();
  ASSERT_TRUE(slot.contains(private_gfn(0)));
  ASSERT_TRUE(slot.peek_private(private_gfn(0)));
  slot.set_private(private_gfn(0), false);
  const auto got = check("plant attribute");
  EXPECT_TRUE(got.count("leaf_attr")) << dump();
  slot.set_private(private_gfn(0), true);
  expect_clean_again_and_at_end_of_life();
}

TEST_P(CheckerTest, SharedPageOwnedBySomeoneElseIsReported) {
  // The direct leaf may be huge: the page is the one behind this gfn.
  const Pfn pfn = mapped_pfn(false, Gfn::from_gpa(kBufGpa));
  ASSERT_TRUE(pfn.valid());
  ASSERT_TRUE(vm_->pool().transfer(pfn, PageOwner::GuestShared, PageOwner::HostSource));
  const auto got = check("plant owner");
  EXPECT_TRUE(got.count("pfn_owner")) << dump();
  ASSERT_TRUE(vm_->pool().transfer(pfn, PageOwner::HostSource, PageOwner::GuestShared));
  expect_clean_again_and_at_end_of_life();
}

TEST_P(CheckerTest, MirrorPageWithoutExternalSptIsReported) {
  MmuPage* sp = child_sp(true, private_gfn(0), PgLevel::k2M);
  ASSERT_NE(sp, nullptr);
  const Pfn saved = sp->external_spt;
  sp->external_spt = kInvalidPfn;
  const auto got = check("plant external_spt");
  EXPECT_TRUE(got.count("external_spt")) << dump();
  sp->external_spt = saved;
  expect_clean_again_and_at_end_of_life();
}

TEST_P(CheckerTest, MirrorTableLinkedByAnotherSeptPageIsReported) {
  // The 4K table's external_spt swapped for its parent's: still an S-EPT
  // page, but not the one the S-EPT links at this gfn and level.
  MmuPage* pt = child_sp(true, private_gfn(0), PgLevel::k2M);
  MmuPage* pd = child_sp(true, private_gfn(0), PgLevel::k1G);
  ASSERT_NE(pt, nullptr);
  ASSERT_NE(pd, nullptr);
  ASSERT_NE(pt->external_spt, pd->external_spt);
  const Pfn saved = pt->external_spt;
  pt->external_spt = pd->external_spt;
  const auto got = check("plant S-EPT page");
  EXPECT_TRUE(got.count("mirror_sept_table")) << dump();
  pt->external_spt = saved;
  expect_clean_again_and_at_end_of_life();
}

TEST_P(CheckerTest, PageHeaderDisagreeingWithItsLinkIsReported) {
  MmuPage* sp = child_sp(true, private_gfn(0), PgLevel::k2M);
  ASSERT_NE(sp, nullptr);
  const Gfn saved = sp->gfn;
  sp->gfn = saved + pages_per_hpage(PgLevel::k2M);
  const auto got = check("plant sp->gfn");
  EXPECT_TRUE(got.count("sp_linkage")) << dump();
  sp->gfn = saved;
  expect_clean_again_and_at_end_of_life();
}

TEST_P(CheckerTest, PageStatsOffByOneIsReported) {
  vm_->mmu().kvm_update_page_stats(PgLevel::k4K, +1);
  const auto got = check("plant stats");
  EXPECT_TRUE(got.count("stats_pages")) << dump();
  vm_->mmu().kvm_update_page_stats(PgLevel::k4K, -1);
  expect_clean_again_and_at_end_of_life();
}

TEST_P(CheckerTest, DoubleFreeIsReported) {
  const Pfn pfn = vm_->pool().alloc(PageOwner::HostSource);
  ASSERT_TRUE(pfn.valid());
  ASSERT_TRUE(vm_->pool().free(pfn, PageOwner::HostSource));
  EXPECT_FALSE(vm_->pool().free(pfn, PageOwner::HostSource));
  const auto got = check("plant double free");
  EXPECT_TRUE(got.count("pool")) << dump();
  // Reported once, not again on every later check.
  EXPECT_TRUE(check("again").empty()) << dump();
}

TEST_P(CheckerTest, WarnSiteHitIsReportedOnce) {
  vm_->bugs().hit(Site::changed_spte_nonpresent);
  EXPECT_FALSE(vm_->bugs().bugged());  // a WARN does not kill the VM
  const auto got = check("plant WARN");
  EXPECT_TRUE(got.count("bug_site")) << dump();
  EXPECT_TRUE(check("again").empty()) << dump();
}

TEST_P(CheckerTest, KvmBugOnHitIsReportedAndMarksTheVmBugged) {
  vm_->bugs().hit(Site::external_spt_null);
  EXPECT_TRUE(vm_->bugs().bugged());
  const auto got = check("plant KVM_BUG_ON");
  EXPECT_TRUE(got.count("bug_site")) << dump();
  // A dead VM refuses the guest.
  EXPECT_EQ(vm_->vcpu_access(0, private_gpa(0), false), ExitReason::VmDead);
}

TEST_P(CheckerTest, FrameLeftAllocatedAfterTeardownIsALeak) {
  vm_->destroy();
  ASSERT_EQ(ck_->check_end_of_life(), 0u) << dump();
  const Pfn pfn = vm_->pool().alloc(PageOwner::GuestShared);
  ASSERT_TRUE(pfn.valid());
  const size_t before = ck_->violations().size();
  EXPECT_GT(ck_->check_end_of_life(), 0u);
  ASSERT_GT(ck_->violations().size(), before);
  EXPECT_EQ(ck_->violations()[before].invariant, "leak") << dump();
  EXPECT_EQ(ck_->pages_leaked(), 1u);
  vm_->pool().free(pfn, PageOwner::GuestShared);
}

TEST_P(CheckerTest, PrivateFaultIsClassifiedAsASharedLockMirrorLeafInstall) {
  const TransitionClass install{spte::Kind::NonPresent, spte::Kind::Leaf, /*shared=*/true, /*mirror=*/true};
  const size_t i = TransitionCounts::index(install);
  EXPECT_EQ(TransitionCounts::at(i).name(), "nonpresent->leaf shared mirror");
  const TransitionCounts& t = ck_->transitions();
  // SetUp's private accesses were seen, one install per page.
  EXPECT_EQ(t.count(i), kTouchedPrivate);
  // One more private page: its tables exist, so exactly one more install and
  // nothing counted as a direct-root change.
  const TransitionClass direct{spte::Kind::NonPresent, spte::Kind::Leaf, true, false};
  const uint64_t direct_before = t.count(TransitionCounts::index(direct));
  ASSERT_EQ(vm_->vcpu_access(0, private_gpa(kTouchedPrivate), true), ExitReason::None);
  EXPECT_EQ(t.count(i), kTouchedPrivate + 1);
  EXPECT_EQ(t.count(TransitionCounts::index(direct)), direct_before);
  // Converting it back to shared zaps it under the exclusive lock.
  const TransitionClass zap{spte::Kind::Leaf, spte::Kind::NonPresent, false, true};
  const uint64_t zaps_before = t.count(TransitionCounts::index(zap));
  ASSERT_EQ(vm_->set_memory_attributes(private_gpa(kTouchedPrivate), kPageSize, false), 0);
  EXPECT_EQ(t.count(TransitionCounts::index(zap)), zaps_before + 1);
  EXPECT_EQ(TransitionCounts::at(TransitionCounts::index(zap)).name(), "leaf->nonpresent exclusive mirror");
  EXPECT_TRUE(check("after conversion").empty()) << dump();
}

// What makes incremental checking cheap, and what it costs: a range the VM
// names is looked at by the next check, anything else only by the next full
// pass. Were the incremental pass secretly a full one, the second test fails.
TEST_P(CheckerTest, RangeTheVmNamesIsCheckedByTheNextCheck) {
  if (GetParam() != CheckMode::Incremental) GTEST_SKIP() << "incremental checking only";
  Memslot& slot = *vm_->memslots().front();
  slot.set_private(private_gfn(0), false);
  vm_->mmu().observer()->on_gfn_range_changed(private_gfn(0), 1);
  const uint64_t full_before = ck_->full_checks();
  EXPECT_GT(ck_->check("named range"), 0u);
  EXPECT_EQ(ck_->full_checks(), full_before);
  EXPECT_TRUE(ck_->violations().size() && ck_->violations().back().invariant == "leaf_attr") << dump();
  slot.set_private(private_gfn(0), true);
  expect_clean_again_and_at_end_of_life();
}

TEST_P(CheckerTest, CorruptionNobodyNamedWaitsForTheFullPass) {
  if (GetParam() != CheckMode::Incremental) GTEST_SKIP() << "incremental checking only";
  const Gfn gfn = private_gfn(0);
  const uint64_t old = plant(true, gfn, PgLevel::k4K, spte::kFrozen);
  const uint64_t full_before = ck_->full_checks();
  EXPECT_EQ(ck_->check("unnamed plant"), 0u) << dump();
  EXPECT_EQ(ck_->full_checks(), full_before);
  const size_t before = ck_->violations().size();
  EXPECT_GT(ck_->check_full("full pass"), 0u);
  bool frozen = false;
  for (size_t i = before; i < ck_->violations().size(); i++) frozen |= ck_->violations()[i].invariant == "frozen_reachable";
  EXPECT_TRUE(frozen) << dump();
  plant(true, gfn, PgLevel::k4K, old);
  expect_clean_again_and_at_end_of_life();
}

// A fault is looked at where it happened: the check after it walks the 2M
// region it changed, not the guest, and finds a fault whose S-EPT leaf went
// missing at once (the SEAMCALL names the range even if the MMU did not).
TEST_P(CheckerTest, CheckAfterAFaultWalksWhatTheFaultChanged) {
  if (GetParam() != CheckMode::Incremental) GTEST_SKIP() << "incremental checking only";
  const uint64_t entries_before = ck_->entries_checked();
  ASSERT_EQ(vm_->vcpu_access(0, private_gpa(kTouchedPrivate), true), ExitReason::None);
  const uint64_t full_before = ck_->full_checks();
  EXPECT_EQ(ck_->check("one fault"), 0u) << dump();
  EXPECT_EQ(ck_->full_checks(), full_before);
  // The private 2M region holds kTouchedPrivate + 1 leaves and their table.
  const uint64_t walked = ck_->entries_checked() - entries_before;
  EXPECT_GE(walked, kTouchedPrivate + 1);
  EXPECT_LT(walked, kTouchedPrivate + 1 + 2 * kTouchedShared);
  expect_clean_again_and_at_end_of_life();
}

INSTANTIATE_TEST_SUITE_P(Modes, CheckerTest, ::testing::Values(CheckMode::Full, CheckMode::Incremental),
                         [](const ::testing::TestParamInfo<CheckMode>& i) {
                           return std::string(i.param == CheckMode::Full ? "Full" : "Incremental");
                         });

// The pool lists the frames that leave the guest for the incremental
// checks, up to a bound (a teardown would list the whole guest). Past it,
// every cache-dirty frame is looked at instead: a page punched out without
// its WBINVD is found either way.
TEST(CheckerDepartures, MoreFramesLeavingThanListedAreStillLookedAt) {
  for (const size_t max_listed : {size_t{1} << 18, size_t{1}}) {
    VmConfig cfg;
    cfg.type = VmType::Td;
    cfg.pool_pages = 1ull << 15;
    cfg.what_if.no_wbinvd = true;
    Vm vm(cfg);
    ASSERT_EQ(vm.create(), 0);
    CheckerOptions opts;
    opts.mode = CheckMode::Incremental;
    opts.full_every = 1000;  // no full pass in between
    Checker ck(vm, opts);
    vm.pool().set_max_departures(max_listed);
    ASSERT_EQ(vm.add_memslot(0, kRamGpa, kRamSize, kMemGuestMemfd), 0);
    ASSERT_EQ(vm.finalize(), 0);
    ASSERT_EQ(vm.set_memory_attributes(kRamGpa, 8 * kPageSize, true), 0);
    for (uint64_t i = 0; i < 8; i++) ASSERT_EQ(vm.vcpu_access(0, kRamGpa + i * kPageSize, true), ExitReason::None);
    ck.check("the guest wrote 8 private pages");
    ASSERT_TRUE(ck.ok()) << ck.describe();
    ASSERT_EQ(vm.punch_hole(kRamGpa, 8 * kPageSize), 0);
    ck.check("punch the 8 pages out");
    std::set<std::string> seen;
    for (const Violation& v : ck.violations()) seen.insert(v.invariant);
    EXPECT_TRUE(seen.count("cache_not_written_back")) << "listing at most " << max_listed << ": " << ck.describe();
    vm.destroy();
  }
}

}  // namespace
}  // namespace mirrormmu::test
