// SPDX-License-Identifier: MIT
// A call keeps its shared holds of the TD-wide locks (TDR, S-EPT tree, TD
// epoch) to itself while it holds the model's lock (module_impl.h, "Shared
// holds"). Another call must still meet them: in the first contention window
// of a call holding one shared, a call that needs it exclusively gets BUSY
// naming it. Each case runs as built and with one of two bugs planted, which
// the same check catches: the window's counting-in planted away, and the
// exclusive attempt a call makes alone (holding the model's lock
// exclusively) not summing the shared holders.
#include <functional>
#include <utility>

#include "sync/sched.h"
#include "tdx/tdx_fixture.h"

namespace mirrormmu::tdx::test {
namespace {

std::function<void()> g_in_window;

void run_in_window(sync::PointKind kind, const void* /*object*/) {
  if (kind != sync::PointKind::ModuleTryLock || !g_in_window) return;
  const std::function<void()> fn = std::exchange(g_in_window, nullptr);
  fn();
}

// Runs a call inside the first contention window another call opens.
class WindowTest : public TdxTest {
 protected:
  void SetUp() override { runnable_td(); }
  void TearDown() override { sync::set_sched_handler(nullptr); }

  // Runs `outer`, and `inner` inside the first window `outer` opens; returns
  // inner's status, and outer's in `outer_status`.
  template <class Outer, class Inner>
  Status in_window_of(Outer&& outer, Inner&& inner, Status& outer_status) {
    Status nested = ~Status{0};
    g_in_window = [&] { nested = status_of(inner()); };
    sync::set_sched_handler(run_in_window);
    outer_status = status_of(outer());
    sync::set_sched_handler(nullptr);
    EXPECT_FALSE(g_in_window) << "the outer call opened no window";
    g_in_window = nullptr;
    return nested;
  }
};

enum class Plant { None, WindowHidesHolds, ExclusiveIgnoresShared };

class SharedHoldsTest : public WindowTest, public ::testing::WithParamInterface<Plant> {
 protected:
  void SetUp() override {
    WindowTest::SetUp();
    if (GetParam() == Plant::WindowHidesHolds) td.plant_window_hides_holds();
    if (GetParam() == Plant::ExclusiveIgnoresShared) td.plant_exclusive_ignores_shared();
  }
  static bool planted() { return GetParam() != Plant::None; }

  // The check both variants run: the inner call met the lock.
  void expect_met(Status inner, Status busy) {
    if (planted())
      EXPECT_NE(inner, busy) << "the planted window should have let the exclusive attempt through";
    else
      EXPECT_EQ(inner, busy);
  }
};

TEST_P(SharedHoldsTest, BlockMeetsTheTreeLockAnAugHolds) {
  link(0x5000);
  link(2 * k2M);  // a level-1 entry BLOCK can take (NL_MAPPED)
  const Pfn frame = page(PageOwner::GuestPrivate);
  Status aug = 0;
  const Status block = in_window_of([&] { return td.tdh_mem_page_aug(0x5000, 0, frame); },
                                    [&] { return td.tdh_mem_range_block(2 * k2M, 1); }, aug);
  EXPECT_EQ(aug, TDX_SUCCESS);
  expect_met(block, with_operand(TDX_OPERAND_BUSY, Operand::SEPT_TREE));
  EXPECT_EQ(state(2 * k2M, 1), planted() ? SeptState::NlBlocked : SeptState::NlMapped);
}

TEST_P(SharedHoldsTest, TrackMeetsTheEpochLockAVpEnterHolds) {
  const uint64_t epoch = td.td_epoch();
  Status enter = 0;
  const Status track =
      in_window_of([&] { return td.tdh_vp_enter(0); }, [&] { return td.tdh_mem_track(); }, enter);
  EXPECT_EQ(enter, TDX_SUCCESS);
  expect_met(track, with_operand(TDX_OPERAND_BUSY, Operand::TD_EPOCH));
  EXPECT_EQ(td.td_epoch(), planted() ? epoch + 1 : epoch);
  td.td_exit(0);
}

TEST_P(SharedHoldsTest, AnExclusiveTdrCallMeetsTheTdrAnAugHolds) {
  link(0x5000);
  const Pfn frame = page(PageOwner::GuestPrivate);
  Status aug = 0;
  const Status flushdone = in_window_of([&] { return td.tdh_mem_page_aug(0x5000, 0, frame); },
                                        [&] { return td.tdh_mng_vpflushdone(); }, aug);
  EXPECT_EQ(aug, TDX_SUCCESS);
  expect_met(flushdone, rcx(TDX_OPERAND_BUSY));
}

// The holds counted in at a window are dropped with the call: afterwards
// every lock is free again for an exclusive attempt.
TEST_F(WindowTest, HoldsCountedInAtAWindowAreDroppedWithTheCall) {
  link(0x5000);
  link(2 * k2M);
  const Pfn frame = page(PageOwner::GuestPrivate);
  Status aug = 0;
  (void)in_window_of([&] { return td.tdh_mem_page_aug(0x5000, 0, frame); }, [] { return TDX_SUCCESS; }, aug);
  ASSERT_EQ(aug, TDX_SUCCESS);
  EXPECT_EQ(td.tdh_mem_range_block(2 * k2M, 1).status, TDX_SUCCESS);
  EXPECT_EQ(td.tdh_mem_track(), TDX_SUCCESS);
}

INSTANTIATE_TEST_SUITE_P(AsBuiltAndPlanted, SharedHoldsTest,
                         ::testing::Values(Plant::None, Plant::WindowHidesHolds, Plant::ExclusiveIgnoresShared),
                         [](const auto& info) {
                           switch (info.param) {
                             case Plant::None: return "AsBuilt";
                             case Plant::WindowHidesHolds: return "PlantedWindowHidesHolds";
                             case Plant::ExclusiveIgnoresShared: return "PlantedExclusiveIgnoresShared";
                           }
                           return "?";
                         });

}  // namespace
}  // namespace mirrormmu::tdx::test
