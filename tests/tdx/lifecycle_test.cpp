// SPDX-License-Identifier: MIT
// End-to-end TD lifecycles the way KVM drives them, plus the cross-cutting
// parts of the module: entry enumeration, stats, observer, fault injection,
// scheduling points, 5-level S-EPT and thread safety.
#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <thread>

#include "sync/sched.h"
#include "tdx/tdx_fixture.h"

namespace mirrormmu::tdx::test {
namespace {

using LifecycleTest = TdxTest;

bool all_frames_nda(const TdxModule& td, const PfnPool& pool) {
  for (uint64_t i = 0; i < pool.size(); ++i) {
    if (td.pamt_type(Pfn{i}) != PamtType::Nda) return false;
  }
  return true;
}

TEST_F(LifecycleTest, BuildRunZapReleaseReclaim) {
  // Build: TDR, keys, TDCS, two vCPUs.
  create_td();
  add_vcpu(0);
  add_vcpu(1);

  // Initial image: four measured pages below 2M.
  std::vector<Pfn> image;
  for (uint64_t i = 0; i < 4; ++i) {
    const uint64_t gpa = i * k4K;
    link(gpa);
    const Pfn hpa = page(PageOwner::GuestPrivate);
    ASSERT_EQ(td.tdh_mem_page_add(gpa, 0, hpa, page(PageOwner::HostSource)).status, TDX_SUCCESS);
    for (uint64_t off = 0; off < k4K; off += 256) ASSERT_EQ(td.tdh_mr_extend(gpa + off), TDX_SUCCESS);
    image.push_back(hpa);
  }
  ASSERT_EQ(td.tdh_mr_finalize(), TDX_SUCCESS);

  // Run: a 4K and a 2M page faulted in and accepted by the guest.
  ASSERT_EQ(td.tdh_vp_enter(0), TDX_SUCCESS);
  const uint64_t gpa4k = 0x10000000;
  const Pfn p4k = aug(gpa4k);
  EXPECT_EQ(state(gpa4k, 0), SeptState::Pending);
  EXPECT_EQ(td.tdg_mem_page_accept(0, gpa4k, 0).outcome, AcceptResult::Outcome::Accepted);
  EXPECT_EQ(state(gpa4k, 0), SeptState::Mapped);
  const uint64_t gpa2m = 0x20000000;
  const Pfn p2m = aug(gpa2m, 1);
  EXPECT_EQ(td.tdg_mem_page_accept(0, gpa2m, 1).outcome, AcceptResult::Outcome::Accepted);
  const uint64_t private_pages = image.size() + 1 + 512;
  const uint64_t control_pages = tdcs.size() + vcpu_pages.size();
  EXPECT_EQ(td.chldcnt(), control_pages + sept_pages.size() + private_pages);

  // Zap every leaf while the HKID is assigned: BLOCK, TRACK, kick, REMOVE, WBINVD.
  struct Leaf {
    uint64_t gpa;
    int level;
    Pfn hpa;
  };
  std::vector<Leaf> leaves{{gpa4k, 0, p4k}, {gpa2m, 1, p2m}};
  for (uint64_t i = 0; i < image.size(); ++i) leaves.push_back({i * k4K, 0, image[i]});
  for (const Leaf& l : leaves) {
    ASSERT_EQ(td.tdh_mem_range_block(l.gpa, l.level).status, TDX_SUCCESS);
    ASSERT_EQ(td.tdh_mem_track(), TDX_SUCCESS);
    if (td.vcpu_in_guest(0)) {
      // vCPU 0 entered before this TRACK: REMOVE must wait for the kick.
      EXPECT_EQ(td.tdh_mem_page_remove(l.gpa, l.level).status, rcx(TDX_TLB_TRACKING_NOT_DONE));
      td.td_exit(0);
    }
    ASSERT_EQ(td.tdh_mem_page_remove(l.gpa, l.level).status, TDX_SUCCESS);
    EXPECT_EQ(state(l.gpa, l.level), SeptState::Free);
    for (uint64_t f = 0; f < (l.level == 1 ? 512u : 1u); ++f) {
      ASSERT_EQ(td.tdh_phymem_page_wbinvd(l.hpa + f, kHkid), TDX_SUCCESS);
    }
  }
  EXPECT_EQ(td.chldcnt(), control_pages + sept_pages.size());

  // Release the HKID.
  release_hkid({0, 1});
  EXPECT_EQ(td.lifecycle(), Lifecycle::Teardown);
  EXPECT_FALSE(td.hkid_assigned());

  // Reclaim every S-EPT page (KVM frees child tables before parents, but the
  // module does not care), then the vCPU pages, the TDCS pages, the TDR.
  for (auto it = sept_pages.rbegin(); it != sept_pages.rend(); ++it) {
    ASSERT_EQ(td.tdh_phymem_page_reclaim(*it), TDX_SUCCESS);
    EXPECT_EQ(td.pamt_type(*it), PamtType::Nda);
  }
  for (Pfn p : vcpu_pages) ASSERT_EQ(td.tdh_phymem_page_reclaim(p), TDX_SUCCESS);
  EXPECT_EQ(td.tdh_phymem_page_reclaim(tdr), TDX_TD_ASSOCIATED_PAGES_EXIST);
  for (Pfn p : tdcs) ASSERT_EQ(td.tdh_phymem_page_reclaim(p), TDX_SUCCESS);
  EXPECT_EQ(td.chldcnt(), 0u);
  ASSERT_EQ(td.tdh_phymem_page_reclaim(tdr), TDX_SUCCESS);
  EXPECT_EQ(td.tdh_phymem_page_wbinvd(tdr, 0), TDX_SUCCESS);

  EXPECT_TRUE(all_frames_nda(td, pool));
  int entries = 0;
  td.for_each_entry([&](const TdxModule::EntryView&) { ++entries; });
  EXPECT_EQ(entries, 0);
  // The TDR is gone: TD-scoped calls no longer find it.
  EXPECT_EQ(td.tdh_mem_track(), rcx(TDX_PAGE_METADATA_INCORRECT));
}

TEST_F(LifecycleTest, ForEachEntryIsParentsFirstInGpaOrder) {
  runnable_td();
  aug(5 * k1G + 3 * k4K);
  aug(k2M, 1);
  aug(7 * k4K);
  aug(k512G + k4K);
  std::vector<TdxModule::EntryView> seen;
  td.for_each_entry([&](const TdxModule::EntryView& e) { seen.push_back(e); });
  // Pre-order: sorted by GPA, and at equal GPA the parent (higher level) first.
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end(), [](const auto& a, const auto& b) {
    return a.gpa != b.gpa ? a.gpa < b.gpa : a.tdx_level > b.tdx_level;
  }));
  EXPECT_EQ(seen.size(), sept_pages.size() + 4);
  for (size_t i = 0; i < seen.size(); ++i) {
    const auto& e = seen[i];
    if (e.tdx_level == 3) continue;
    const uint64_t parent_gpa = align_down(e.gpa, e.tdx_level + 1);
    const bool parent_before = std::any_of(seen.begin(), seen.begin() + static_cast<ptrdiff_t>(i), [&](const auto& p) {
      return p.gpa == parent_gpa && p.tdx_level == e.tdx_level + 1 && p.state == SeptState::NlMapped;
    });
    EXPECT_TRUE(parent_before) << std::hex << e.gpa << " level " << e.tdx_level;
  }
  EXPECT_EQ(seen.back().gpa, k512G + k4K);
  EXPECT_EQ(seen.back().state, SeptState::Pending);
}

TEST_F(LifecycleTest, ReadEntryOutsideTheTree) {
  runnable_td();
  const auto e = td.read_entry(0x1234567, 0);
  EXPECT_EQ(e.state, SeptState::Free);
  EXPECT_FALSE(e.pfn.valid());
  EXPECT_EQ(e.gpa, 0x1234000u);
  EXPECT_FALSE(td.read_entry(0, 9).pfn.valid());
}

// ---- stats and observer ---------------------------------------------------------------

struct Recorder : SeamcallObserver {
  struct Call {
    Leaf leaf;
    uint64_t gpa;
    int level;
    Status status;
    SeptState state_seen;
  };
  explicit Recorder(const TdxModule& m) : td(m) {}
  void on_seamcall(Leaf leaf, uint64_t gpa, int level, Status status) override {
    // The observer may read the module while the call is being accounted.
    calls.push_back({leaf, gpa, level, status, td.read_entry(gpa, level).state});
  }
  const TdxModule& td;
  std::vector<Call> calls;
};

TEST_F(LifecycleTest, StatsCountEveryCallByStatus) {
  runnable_td();
  link(0x5000);
  ASSERT_EQ(td.tdh_mem_page_aug(0x5000, 0, page(PageOwner::GuestPrivate)).status, TDX_SUCCESS);
  const Pfn again = page(PageOwner::GuestPrivate);
  ASSERT_EQ(td.tdh_mem_page_aug(0x5000, 0, again).status, rcx(TDX_EPT_ENTRY_STATE_INCORRECT));
  const auto aug_stats = td.stats(Leaf::MEM_PAGE_AUG);
  EXPECT_EQ(aug_stats.calls, 2u);
  EXPECT_EQ(aug_stats.by_status.at(TDX_SUCCESS), 1u);
  EXPECT_EQ(aug_stats.by_status.at(rcx(TDX_EPT_ENTRY_STATE_INCORRECT)), 1u);
  EXPECT_EQ(td.stats(Leaf::MR_FINALIZE).calls, 1u);
  EXPECT_EQ(td.stats(Leaf::MEM_SEPT_ADD).calls, 3u);
}

TEST_F(LifecycleTest, ObserverSeesEveryCallAfterItsEffect) {
  runnable_td();
  Recorder rec(td);
  td.set_observer(&rec);
  link(0x5000);
  ASSERT_EQ(td.tdh_mem_page_aug(0x5000, 0, page(PageOwner::GuestPrivate)).status, TDX_SUCCESS);
  ASSERT_EQ(td.tdh_mem_track(), TDX_SUCCESS);
  td.set_observer(nullptr);
  ASSERT_EQ(td.tdh_mem_track(), TDX_SUCCESS);
  ASSERT_EQ(rec.calls.size(), 5u);
  EXPECT_EQ(rec.calls[0].leaf, Leaf::MEM_SEPT_ADD);
  EXPECT_EQ(rec.calls[0].level, 3);
  EXPECT_EQ(rec.calls[0].state_seen, SeptState::NlMapped);
  EXPECT_EQ(rec.calls[3].leaf, Leaf::MEM_PAGE_AUG);
  EXPECT_EQ(rec.calls[3].gpa, 0x5000u);
  EXPECT_EQ(rec.calls[3].status, TDX_SUCCESS);
  EXPECT_EQ(rec.calls[3].state_seen, SeptState::Pending);
  EXPECT_EQ(rec.calls[4].leaf, Leaf::MEM_TRACK);
  EXPECT_EQ(rec.calls[4].gpa, 0u);
}

// ---- fault injection -----------------------------------------------------------------

class InjectTest : public TdxTest {
 protected:
  void SetUp() override { runnable_td(); }
  void arm_next(Injection what) {
    inject.arm(InjectPoint::Seamcall, inject.seen(InjectPoint::Seamcall) + 1, what);
  }
};

TEST_F(InjectTest, BusyOnMapCallsIsSeptTree) {
  link(0x5000);
  const Pfn hpa = page(PageOwner::GuestPrivate);
  arm_next(Injection::Busy);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_aug(0x5000, 0, hpa); }),
            with_operand(TDX_OPERAND_BUSY, Operand::SEPT_TREE));
  EXPECT_EQ(inject.fired(), 1u);
  EXPECT_EQ(td.stats(Leaf::MEM_PAGE_AUG).by_status.at(
                with_operand(TDX_OPERAND_BUSY, Operand::SEPT_TREE)),
            1u);
  // The retry goes through.
  EXPECT_EQ(td.tdh_mem_page_aug(0x5000, 0, hpa).status, TDX_SUCCESS);
}

TEST_F(InjectTest, BusyOnTrackIsTdEpoch) {
  arm_next(Injection::Busy);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_track(); }), with_operand(TDX_OPERAND_BUSY, Operand::TD_EPOCH));
}

TEST_F(InjectTest, BusyOnReclaimAndWbinvdIsRcx) {
  release_hkid();
  arm_next(Injection::Busy);
  EXPECT_EQ(unchanged([&] { return td.tdh_phymem_page_reclaim(tdcs[1]); }), rcx(TDX_OPERAND_BUSY));
  arm_next(Injection::Busy);
  const Pfn free_frame = page(PageOwner::GuestPrivate);
  EXPECT_EQ(td.tdh_phymem_page_wbinvd(free_frame, kHkid), rcx(TDX_OPERAND_BUSY));
}

TEST_F(InjectTest, ErrorIsOperandInvalid) {
  link(0x5000);
  arm_next(Injection::Error);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_range_block(0x5000 & ~(k2M - 1), 1); }), rcx(TDX_OPERAND_INVALID));
  EXPECT_EQ(state(0, 1), SeptState::NlMapped);
}

TEST_F(InjectTest, OnlyHostMemoryCallsAreInjectionPoints) {
  const auto seen = [&] { return inject.seen(InjectPoint::Seamcall); };
  uint64_t n = seen();
  const auto consulted = [&](auto&& call, bool expected) {
    call();
    const uint64_t now = seen();
    EXPECT_EQ(now != n, expected);
    n = now;
  };
  const Pfn pt_pages[3] = {page(PageOwner::SeptPage), page(PageOwner::SeptPage), page(PageOwner::SeptPage)};
  consulted([&] { return td.tdh_mem_sept_add(0, 3, pt_pages[0]); }, true);
  consulted([&] { return td.tdh_mem_sept_add(0, 2, pt_pages[1]); }, true);
  consulted([&] { return td.tdh_mem_sept_add(0, 1, pt_pages[2]); }, true);
  consulted([&] { return td.tdh_mem_page_add(0, 0, page(), page()); }, true);
  consulted([&] { return td.tdh_mem_page_aug(0, 0, page(PageOwner::GuestPrivate)); }, true);
  consulted([&] { return td.tdh_mem_range_block(0, 0); }, true);
  consulted([&] { return td.tdh_mem_track(); }, true);
  consulted([&] { return td.tdh_mem_range_unblock(0, 0); }, true);
  consulted([&] { return td.tdh_mem_range_block(0, 1); }, true);
  consulted([&] { return td.tdh_mem_sept_remove(0, 1); }, true);
  consulted([&] { return td.tdh_mem_page_remove(0, 0); }, true);
  consulted([&] { return td.tdh_phymem_page_reclaim(tdr); }, true);
  consulted([&] { return td.tdh_phymem_page_wbinvd(page(), 0); }, true);
  consulted([&] { return td.tdh_mem_sept_rd(0, 3); }, false);
  consulted([&] { return td.tdh_vp_enter(0); }, false);
  consulted([&] { return td.tdg_mem_page_accept(0, 0, 0); }, false);
  consulted([&] { return td.tdh_vp_create(7, page()); }, false);
  consulted([&] { return td.tdh_mr_extend(0); }, false);
}

// ---- scheduling points ----------------------------------------------------------------

std::atomic<int> g_seamcall_points{0};
const void* g_expected_object = nullptr;

void count_seamcall_points(sync::PointKind kind, const void* object) {
  if (kind == sync::PointKind::Seamcall && object == g_expected_object) ++g_seamcall_points;
}

TEST_F(LifecycleTest, EverySeamcallIsASchedulingPoint) {
  g_seamcall_points = 0;
  g_expected_object = &td;
  sync::set_sched_handler(count_seamcall_points);
  runnable_td();
  ASSERT_EQ(td.tdh_mem_track(), TDX_SUCCESS);
  sync::set_sched_handler(nullptr);
  // create, key config, MNG.ADDCX x tdcs_pages, init, VP.CREATE, VP.ADDCX x
  // tdvpx_pages, VP.INIT, finalize, track
  EXPECT_EQ(g_seamcall_points.load(), 7 + td.config().tdcs_pages + td.config().tdvpx_pages);
}

// ---- 5-level S-EPT ---------------------------------------------------------------------

class FiveLevelTest : public TdxTest {
 protected:
  FiveLevelTest() : TdxTest(ModuleConfig{.sept_levels = 5}) {}
  void SetUp() override { runnable_td(); }
};

TEST_F(FiveLevelTest, RootIsLevelFourAndSharedBitIs51) {
  const uint64_t high = 1ull << 50;  // private with a 52-bit GPAW
  link(high);
  EXPECT_EQ(sept_pages.size(), 4u);
  EXPECT_EQ(state(high, 4), SeptState::NlMapped);
  EXPECT_EQ(td.tdh_mem_page_aug(high, 0, page(PageOwner::GuestPrivate)).status, TDX_SUCCESS);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_sept_add(1ull << 51, 4, page(PageOwner::SeptPage)); }),
            rcx(TDX_OPERAND_INVALID));
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_sept_add(0, 5, page(PageOwner::SeptPage)); }),
            rcx(TDX_OPERAND_INVALID));
  Ret r;
  EXPECT_EQ(unchanged([&] { return r = td.tdh_mem_sept_add(0, 3, page(PageOwner::SeptPage)); }),
            rcx(TDX_EPT_WALK_FAILED));
  EXPECT_EQ(r.level_state, 4u);
}

TEST(TdxModuleConfig, RejectsUnsupportedWalkLength) {
  PfnPool pool(1024);
  EXPECT_THROW(TdxModule bad(pool, ModuleConfig{.sept_levels = 3}), std::invalid_argument);
  EXPECT_THROW(TdxModule bad(pool, ModuleConfig{.tdcs_pages = 0}), std::invalid_argument);
}

// ---- thread safety ---------------------------------------------------------------------

// Real threads meet the module's try-locks (tree, epoch, entry) held by each
// other: a call then fails with BUSY naming the lock, changes nothing, and
// a retry succeeds. The state ends exactly as the successful calls say.
TEST_F(LifecycleTest, ConcurrentCallsContendOnlyWithBusy) {
  runnable_td();
  constexpr int kThreads = 4;
  constexpr int kPagesPerThread = 64;
  for (int t = 0; t < kThreads; ++t) link(uint64_t(t) * k2M);
  std::vector<std::vector<Pfn>> frames(kThreads);
  for (auto& f : frames) {
    for (int i = 0; i < kPagesPerThread; ++i) f.push_back(page(PageOwner::GuestPrivate));
  }
  const uint64_t before = td.chldcnt();
  const uint64_t epoch_before = td.td_epoch();
  std::vector<std::thread> threads;
  std::atomic<int> other_failures{0}, aug_busy{0}, tracks{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPagesPerThread; ++i) {
        const uint64_t gpa = uint64_t(t) * k2M + uint64_t(i) * k4K;
        for (;;) {
          const Status s = td.tdh_mem_page_aug(gpa, 0, frames[size_t(t)][size_t(i)]).status;
          if (s == TDX_SUCCESS) break;
          if (s == with_operand(TDX_OPERAND_BUSY, Operand::SEPT_TREE) ||
              s == with_operand(TDX_OPERAND_BUSY, Operand::RCX)) {
            ++aug_busy;
            continue;
          }
          ++other_failures;
          break;
        }
        const Status s = td.tdh_mem_track();
        if (s == TDX_SUCCESS) {
          ++tracks;
        } else if (s != with_operand(TDX_OPERAND_BUSY, Operand::TD_EPOCH)) {
          ++other_failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(other_failures.load(), 0);
  EXPECT_EQ(td.chldcnt(), before + kThreads * kPagesPerThread);
  EXPECT_EQ(td.td_epoch(), epoch_before + uint64_t(tracks.load()));
  EXPECT_EQ(td.stats(Leaf::MEM_PAGE_AUG).calls,
            uint64_t(kThreads * kPagesPerThread + aug_busy.load()));
}

}  // namespace
}  // namespace mirrormmu::tdx::test
