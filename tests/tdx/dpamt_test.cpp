// SPDX-License-Identifier: MIT
// Dynamic PAMT: TDH.PHYMEM.PAMT.ADD / PAMT.REMOVE and the page pair every
// call needs before it gives a frame a 4K PAMT entry.
#include <functional>
#include <utility>
#include <vector>

#include "sync/sched.h"
#include "tdx/tdx_fixture.h"

namespace mirrormmu::tdx::test {
namespace {

constexpr uint64_t kGpa = 0x40000000;  // 1G-aligned, so 2M-aligned
constexpr uint64_t kRegionFrames = 512;

Pfn region_of(Pfn frame) { return Pfn{frame.v & ~(kRegionFrames - 1)}; }

class DpamtTest : public TdxTest {
 protected:
  DpamtTest() : TdxTest(ModuleConfig{.dynamic_pamt = true}) {}

  // PAMT.ADD for the region holding `frame`, with two fresh host pages.
  std::pair<Pfn, Pfn> add_pair(Pfn frame) {
    const Pfn p0 = page(PageOwner::Pamt);
    const Pfn p1 = page(PageOwner::Pamt);
    EXPECT_EQ(td.tdh_phymem_pamt_add(region_of(frame), p0, p1), TDX_SUCCESS);
    pair_pages.push_back(p0);
    return {p0, p1};
  }

  // A pair for every region, so the fixture's helpers, which take pages from
  // anywhere in the pool, work unchanged.
  void pair_all() {
    for (uint64_t f = 0; f < pool.size(); f += kRegionFrames) {
      if (!td.pamt_pair_present(Pfn{f})) add_pair(Pfn{f});
    }
  }

  // A fresh 2M run of host frames whose region has no pair.
  Pfn unpaired_run() {
    const Pfn run = pool.alloc_run_2m(PageOwner::GuestPrivate);
    EXPECT_TRUE(run.valid());
    if (td.pamt_pair_present(run)) {
      Pfn p0, p1;
      EXPECT_EQ(td.tdh_phymem_pamt_remove(run, &p0, &p1).status, TDX_SUCCESS);
      pool.free(p0, PageOwner::Pamt);
      pool.free(p1, PageOwner::Pamt);
    }
    EXPECT_FALSE(td.pamt_pair_present(run));
    return run;
  }

  Pfn sept_page() {
    const Pfn p = page(PageOwner::SeptPage);
    sept_pages.push_back(p);
    return p;
  }

  // `unchanged`, plus the pair count, which the snapshot does not hold.
  template <class Fn>
  Status none_changed(Fn&& fn) {
    const uint64_t pairs = td.pamt_pairs();
    const Status s = unchanged(std::forward<Fn>(fn));
    EXPECT_EQ(td.pamt_pairs(), pairs);
    return s;
  }

  std::vector<Pfn> pair_pages;  // the first page of each pair add_pair() made
};

using DpamtOffTest = TdxTest;

TEST_F(DpamtOffTest, NothingNeedsAPairAndThePamtLeavesAreUnknown) {
  runnable_td();
  const Pfn hpa = map_accepted(0x5000);
  EXPECT_EQ(td.pamt_type(hpa), PamtType::Reg);
  // A 2M -> 4K split needs no pair pages either.
  const Pfn huge = aug(kGpa, 1);
  block_and_track(kGpa, 1);
  ASSERT_EQ(td.tdh_mem_page_demote(kGpa, 1, page(PageOwner::SeptPage)).status, TDX_SUCCESS);
  EXPECT_EQ(td.read_entry(kGpa + k4K, 0).pfn, huge + 1);
  EXPECT_FALSE(td.pamt_pair_present(hpa));
  const Pfn p0 = page(PageOwner::Pamt), p1 = page(PageOwner::Pamt);
  // A module without DPAMT does not know the leaves.
  EXPECT_EQ(unchanged([&] { return td.tdh_phymem_pamt_add(region_of(hpa), p0, p1); }),
            with_operand(TDX_OPERAND_INVALID, Operand::RAX));
  Pfn out0, out1;
  EXPECT_EQ(unchanged([&] { return td.tdh_phymem_pamt_remove(region_of(hpa), &out0, &out1); }),
            with_operand(TDX_OPERAND_INVALID, Operand::RAX));
  EXPECT_FALSE(out0.valid());
  EXPECT_EQ(td.pamt_pairs(), 0u);
  EXPECT_EQ(td.pamt_type(p0), PamtType::Nda);
}

TEST_F(DpamtTest, Aug4kNeedsThePairOfItsRegion) {
  pair_all();
  runnable_td();
  link(0x5000);
  const Pfn run = unpaired_run();
  const Pfn hpa = run + 7;
  EXPECT_EQ(none_changed([&] { return td.tdh_mem_page_aug(0x5000, 0, hpa); }), r8(TDX_MISSING_PAMT_PAGE_PAIR));
  const uint64_t pairs = td.pamt_pairs();
  const auto [p0, p1] = add_pair(hpa);
  EXPECT_EQ(td.pamt_pairs(), pairs + 1);
  EXPECT_TRUE(td.pamt_pair_present(run + 511));
  EXPECT_EQ(td.pamt_type(p0), PamtType::Pamt);
  EXPECT_EQ(td.pamt_type(p1), PamtType::Pamt);
  ASSERT_EQ(td.tdh_mem_page_aug(0x5000, 0, hpa).status, TDX_SUCCESS);
  EXPECT_EQ(td.pamt_type(hpa), PamtType::Reg);
}

TEST_F(DpamtTest, Aug2mNeedsNoPairAndItsRegionTakesNone) {
  pair_all();
  runnable_td();
  link(kGpa, 1);
  const Pfn run = unpaired_run();
  ASSERT_EQ(td.tdh_mem_page_aug(kGpa, 1, run).status, TDX_SUCCESS);
  EXPECT_FALSE(td.pamt_pair_present(run));
  // A 2M page has no 4K entries for a pair to hold.
  const Pfn p0 = page(PageOwner::Pamt), p1 = page(PageOwner::Pamt);
  EXPECT_EQ(none_changed([&] { return td.tdh_phymem_pamt_add(run, p0, p1); }), rcx(TDX_HPA_RANGE_NOT_FREE));
}

TEST_F(DpamtTest, SeptAddAndPageAddNeedAPairForTheirPage) {
  pair_all();
  build_td();
  link(0x5000, 1);  // tables down to the PD: the level-1 entry is FREE
  const Pfn run = unpaired_run();
  EXPECT_EQ(none_changed([&] { return td.tdh_mem_sept_add(0, 1, run); }), r8(TDX_MISSING_PAMT_PAGE_PAIR));
  add_pair(run);
  ASSERT_EQ(td.tdh_mem_sept_add(0, 1, run).status, TDX_SUCCESS);
  EXPECT_EQ(td.pamt_type(run), PamtType::Ept);

  const Pfn hpa = unpaired_run();
  const Pfn source = page(PageOwner::HostSource);
  EXPECT_EQ(none_changed([&] { return td.tdh_mem_page_add(0x5000, 0, hpa, source); }),
            r8(TDX_MISSING_PAMT_PAGE_PAIR));
  add_pair(hpa);
  EXPECT_EQ(td.tdh_mem_page_add(0x5000, 0, hpa, source).status, TDX_SUCCESS);
}

TEST_F(DpamtTest, Demote2mTo4kInstallsThePairItIsGiven) {
  pair_all();
  runnable_td();
  link(kGpa, 1);
  const Pfn huge = unpaired_run();
  ASSERT_EQ(td.tdh_mem_page_aug(kGpa, 1, huge).status, TDX_SUCCESS);
  block_and_track(kGpa, 1);
  const Pfn pt = sept_page();
  const Pfn p0 = page(PageOwner::Pamt), p1 = page(PageOwner::Pamt);
  EXPECT_EQ(none_changed([&] { return td.tdh_mem_page_demote(kGpa, 1, pt); }), rcx(TDX_MISSING_PAMT_PAGE_PAIR));
  EXPECT_EQ(none_changed([&] { return td.tdh_mem_page_demote(kGpa, 1, pt, p0); }),
            with_operand(TDX_OPERAND_INVALID, Operand::R13));
  EXPECT_EQ(none_changed([&] { return td.tdh_mem_page_demote(kGpa, 1, pt, pt, p1); }),
            with_operand(TDX_OPERAND_INVALID, Operand::R12));
  EXPECT_EQ(none_changed([&] { return td.tdh_mem_page_demote(kGpa, 1, pt, p0, tdr); }),
            with_operand(TDX_PAGE_NOT_FREE, Operand::R13));
  const uint64_t pairs = td.pamt_pairs();
  ASSERT_EQ(td.tdh_mem_page_demote(kGpa, 1, pt, p0, p1).status, TDX_SUCCESS);
  EXPECT_EQ(td.pamt_pairs(), pairs + 1);
  EXPECT_TRUE(td.pamt_pair_present(huge));
  EXPECT_EQ(td.pamt_type(p0), PamtType::Pamt);
  EXPECT_EQ(td.pamt_type(p1), PamtType::Pamt);
  EXPECT_EQ(td.read_entry(kGpa + 9 * k4K, 0).pfn, huge + 9);
}

TEST_F(DpamtTest, DemoteNeedsAPairForTheNewSeptPageAndReusesTheRangePair) {
  pair_all();
  runnable_td();
  const Pfn huge = aug(kGpa, 1);  // its region has the pair pair_all() gave it
  block_and_track(kGpa, 1);
  const Pfn bare_pt = unpaired_run();
  EXPECT_EQ(none_changed([&] { return td.tdh_mem_page_demote(kGpa, 1, bare_pt); }),
            r8(TDX_MISSING_PAMT_PAGE_PAIR));
  // With the range's pair present, pages offered for it stay the host's.
  const Pfn p0 = page(PageOwner::Pamt), p1 = page(PageOwner::Pamt);
  const uint64_t pairs = td.pamt_pairs();
  ASSERT_EQ(td.tdh_mem_page_demote(kGpa, 1, sept_page(), p0, p1).status, TDX_SUCCESS);
  EXPECT_EQ(td.pamt_pairs(), pairs);
  EXPECT_EQ(td.pamt_type(p0), PamtType::Nda);
  EXPECT_EQ(td.pamt_type(huge + 3), PamtType::Reg);
}

TEST_F(DpamtTest, PromoteKeepsThePairUntilTheHostRemovesIt) {
  pair_all();
  runnable_td();
  link(kGpa, 1);
  const Pfn huge = unpaired_run();
  ASSERT_EQ(td.tdh_mem_page_aug(kGpa, 1, huge).status, TDX_SUCCESS);
  block_and_track(kGpa, 1);
  const Pfn p0 = page(PageOwner::Pamt), p1 = page(PageOwner::Pamt);
  ASSERT_EQ(td.tdh_mem_page_demote(kGpa, 1, sept_page(), p0, p1).status, TDX_SUCCESS);
  Pfn out0, out1;
  // 512 4K pages in use (the first one's entry is in pair page 0): the pair stays.
  EXPECT_EQ(none_changed([&] { return td.tdh_phymem_pamt_remove(huge, &out0, &out1); }), TDX_PAMT_PAGE_NOT_EMPTY);
  block_and_track(kGpa, 1);
  ASSERT_EQ(td.tdh_mem_page_promote(kGpa, 1).status, TDX_SUCCESS);
  EXPECT_TRUE(td.pamt_pair_present(huge));
  // The 2M page no longer has 4K entries, so the pair can be taken back.
  ASSERT_EQ(td.tdh_phymem_pamt_remove(huge, &out0, &out1).status, TDX_SUCCESS);
  EXPECT_EQ(out0, p0);
  EXPECT_EQ(out1, p1);
  EXPECT_FALSE(td.pamt_pair_present(huge));
  EXPECT_EQ(td.pamt_type(huge + 100), PamtType::Reg);
  EXPECT_EQ(td.pamt_type(p0), PamtType::Nda);
}

TEST_F(DpamtTest, PamtRemoveWaitsForTheRegionToEmpty) {
  pair_all();
  runnable_td();
  link(0x5000);
  const Pfn run = unpaired_run();
  const auto [p0, p1] = add_pair(run);
  const Pfn hpa = run + 300;  // its 4K entry lives in pair page 1
  ASSERT_EQ(td.tdh_mem_page_aug(0x5000, 0, hpa).status, TDX_SUCCESS);
  Pfn out0, out1;
  const Status busy = none_changed([&] { return td.tdh_phymem_pamt_remove(run, &out0, &out1); });
  EXPECT_EQ(busy, TDX_PAMT_PAGE_NOT_EMPTY | 1);
  EXPECT_EQ(status_str(busy), "TDX_PAMT_PAGE_NOT_EMPTY|page 1");
  EXPECT_FALSE(out0.valid());
  block_and_track(0x5000, 0);
  ASSERT_EQ(td.tdh_mem_page_remove(0x5000, 0).status, TDX_SUCCESS);
  const uint64_t pairs = td.pamt_pairs();
  ASSERT_EQ(td.tdh_phymem_pamt_remove(run, &out0, &out1).status, TDX_SUCCESS);
  EXPECT_EQ(out0, p0);
  EXPECT_EQ(out1, p1);
  EXPECT_EQ(td.pamt_pairs(), pairs - 1);
  EXPECT_EQ(td.pamt_type(p1), PamtType::Nda);
  EXPECT_EQ(none_changed([&] { return td.tdh_phymem_pamt_remove(run, &out0, &out1); }),
            rcx(TDX_NO_PAMT_PAGE_PAIR));
  EXPECT_EQ(none_changed([&] { return td.tdh_mem_page_aug(0x5000, 0, hpa); }), r8(TDX_MISSING_PAMT_PAGE_PAIR));
}

TEST_F(DpamtTest, PamtAddChecksRegionAndPages) {
  const Pfn run = unpaired_run();
  const Pfn p0 = page(PageOwner::Pamt), p1 = page(PageOwner::Pamt);
  const auto add = [&](Pfn region, Pfn a, Pfn b) {
    return none_changed([&] { return td.tdh_phymem_pamt_add(region, a, b); });
  };
  EXPECT_EQ(add(run + 1, p0, p1), rcx(TDX_OPERAND_INVALID));
  EXPECT_EQ(add(kInvalidPfn, p0, p1), rcx(TDX_OPERAND_INVALID));
  EXPECT_EQ(add(Pfn{pool.size()}, p0, p1), rcx(TDX_OPERAND_ADDR_RANGE_ERROR));
  EXPECT_EQ(add(run, kInvalidPfn, p1), with_operand(TDX_OPERAND_INVALID, Operand::RDX));
  EXPECT_EQ(add(run, p0, Pfn{pool.size() + 5}), r8(TDX_OPERAND_ADDR_RANGE_ERROR));
  EXPECT_EQ(add(run, p0, p0), r8(TDX_OPERAND_INVALID));
  ASSERT_EQ(td.tdh_phymem_pamt_add(run, p0, p1), TDX_SUCCESS);
  // Twice: the region is taken, and so are the pages.
  const Pfn q0 = page(PageOwner::Pamt), q1 = page(PageOwner::Pamt);
  EXPECT_EQ(add(run, q0, q1), rcx(TDX_HPA_RANGE_NOT_FREE));
  const Pfn other = unpaired_run();
  EXPECT_EQ(add(other, p1, q1), with_operand(TDX_PAGE_NOT_FREE, Operand::RDX));
  EXPECT_EQ(td.stats(Leaf::PHYMEM_PAMT_ADD).by_status.at(rcx(TDX_HPA_RANGE_NOT_FREE)), 1u);
  EXPECT_STREQ(pamt_type_name(PamtType::Pamt), "PT_PAMT");
}

TEST_F(DpamtTest, ControlPagesNeedPairs) {
  const auto needs_pair = [&](Pfn frame, const std::function<Status()>& call) {
    EXPECT_EQ(none_changed(call), rcx(TDX_MISSING_PAMT_PAGE_PAIR));
    add_pair(frame);
    EXPECT_EQ(call(), TDX_SUCCESS);
  };
  tdr = unpaired_run();
  needs_pair(tdr, [&] { return td.tdh_mng_create(tdr, kHkid); });
  ASSERT_EQ(td.tdh_mng_key_config(), TDX_SUCCESS);
  const Pfn tdcs_run = unpaired_run();
  needs_pair(tdcs_run, [&] { return td.tdh_mng_addcx(tdcs_run); });
  for (int i = 1; i < td.config().tdcs_pages; ++i) ASSERT_EQ(td.tdh_mng_addcx(tdcs_run + uint64_t(i)), TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mng_init(), TDX_SUCCESS);
  const Pfn tdvpr = unpaired_run();
  needs_pair(tdvpr, [&] { return td.tdh_vp_create(0, tdvpr); });
  const Pfn tdcx = unpaired_run();
  needs_pair(tdcx, [&] { return td.tdh_vp_addcx(0, tdcx); });
  EXPECT_EQ(td.pamt_type(tdcx), PamtType::Tdcx);
  EXPECT_EQ(td.pamt_pairs(), 4u);
}

TEST_F(DpamtTest, AfterTeardownEveryPairComesBack) {
  pair_all();
  runnable_td();
  std::vector<Pfn> guest = {map_accepted(0x5000), map_accepted(0x6000)};
  release_hkid();
  Pfn p0, p1;
  EXPECT_EQ(status_base(none_changed([&] { return td.tdh_phymem_pamt_remove(region_of(guest[0]), &p0, &p1); })),
            TDX_PAMT_PAGE_NOT_EMPTY);
  // A pair page belongs to no TD: RECLAIM refuses it.
  EXPECT_EQ(none_changed([&] { return td.tdh_phymem_page_reclaim(pair_pages.at(0)); }),
            rcx(TDX_PAGE_METADATA_INCORRECT));
  for (const auto& list : {guest, sept_pages, vcpu_pages, tdcs}) {
    for (Pfn p : list) ASSERT_EQ(td.tdh_phymem_page_reclaim(p), TDX_SUCCESS);
  }
  ASSERT_EQ(td.tdh_phymem_page_reclaim(tdr), TDX_SUCCESS);
  for (uint64_t f = 0; f < pool.size(); f += kRegionFrames) {
    Pfn a, b;
    const Ret r = td.tdh_phymem_pamt_remove(Pfn{f}, &a, &b);
    ASSERT_EQ(r.status, TDX_SUCCESS) << status_str(r.status) << " region " << f;
    EXPECT_EQ(td.pamt_type(a), PamtType::Nda);
    EXPECT_TRUE(pool.free(a, PageOwner::Pamt));
    EXPECT_TRUE(pool.free(b, PageOwner::Pamt));
  }
  EXPECT_EQ(td.pamt_pairs(), 0u);
  for (uint64_t i = 0; i < pool.size(); ++i) ASSERT_EQ(td.pamt_type(Pfn{i}), PamtType::Nda) << i;
}

// ---- contention -----------------------------------------------------------------------

std::function<void()> g_in_window;

// Runs the queued call once, inside the first module-lock window it meets.
void run_in_window(sync::PointKind kind, const void* /*object*/) {
  if (kind != sync::PointKind::ModuleTryLock || !g_in_window) return;
  const std::function<void()> fn = std::exchange(g_in_window, nullptr);
  fn();
}

TEST_F(DpamtTest, PamtAddHoldsItsRegionAgainstAug) {
  pair_all();
  runnable_td();
  link(0x5000);
  const Pfn run = unpaired_run();
  const Pfn p0 = page(PageOwner::Pamt), p1 = page(PageOwner::Pamt);
  Ret nested;
  g_in_window = [&] { nested = td.tdh_mem_page_aug(0x5000, 0, run); };
  sync::set_sched_handler(run_in_window);
  const Status add = td.tdh_phymem_pamt_add(run, p0, p1);
  sync::set_sched_handler(nullptr);
  EXPECT_EQ(add, TDX_SUCCESS);
  EXPECT_EQ(nested.status, r8(TDX_OPERAND_BUSY));
  EXPECT_EQ(state(0x5000, 0), SeptState::Free);
  EXPECT_EQ(td.tdh_mem_page_aug(0x5000, 0, run).status, TDX_SUCCESS);
}

TEST_F(DpamtTest, InjectedBusyOnPamtAddChangesNothing) {
  const Pfn run = unpaired_run();
  const Pfn p0 = page(PageOwner::Pamt), p1 = page(PageOwner::Pamt);
  inject.arm(InjectPoint::Seamcall, inject.seen(InjectPoint::Seamcall) + 1, Injection::Busy);
  EXPECT_EQ(none_changed([&] { return td.tdh_phymem_pamt_add(run, p0, p1); }), rcx(TDX_OPERAND_BUSY));
  EXPECT_EQ(td.tdh_phymem_pamt_add(run, p0, p1), TDX_SUCCESS);
}

}  // namespace
}  // namespace mirrormmu::tdx::test
