// SPDX-License-Identifier: MIT
// Virtual threads as fibers: switching, what each virtual thread keeps of its
// own (the thread-locals lockdep and the TDX glue read), and what happens to
// a fiber an aborted execution leaves behind.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/running_vcpu.h"
#include "sync/det_engine.h"
#include "sync/fiber.h"
#include "sync/mmu_lock.h"
#include "sync/sched.h"
#include "sync/spte_atomic.h"

namespace mirrormmu::test {
namespace {

// Picks the i-th option of the n-th thread decision from a list (0 beyond it).
class Scripted : public sync::DetStrategy {
 public:
  explicit Scripted(std::vector<uint32_t> picks) : picks_(std::move(picks)) {}
  uint32_t pick_thread(uint64_t, uint64_t key, const std::vector<int>&, bool) override {
    return key < picks_.size() ? picks_[key] : 0;
  }
  uint32_t pick_fail(uint64_t, uint64_t, sync::FailKind, uint32_t) override { return 0; }

 private:
  std::vector<uint32_t> picks_;
};

TEST(Fiber, SwitchesBackAndForthAndEnds) {
  std::string log;
  sync::Fiber a([&] { log += "abc"; });
  std::vector<std::unique_ptr<sync::Fiber>> fs;
  for (int i = 0; i < 2; i++)
    fs.push_back(std::make_unique<sync::Fiber>([&log, i, &fs] {
      for (int k = 0; k < 3; k++) {
        log += static_cast<char>('0' + i * 10 + k);
        fs[static_cast<size_t>(i)]->suspend();
      }
    }));
  // Round robin from the scheduler's side: each resume runs up to the next
  // suspend, so the two fibers' steps alternate.
  for (int round = 0; round < 4; round++)
    for (auto& f : fs)
      if (!f->done()) f->resume();
  EXPECT_EQ(log, "0:1;2<");
  for (auto& f : fs) EXPECT_TRUE(f->done());
  a.resume();
  EXPECT_TRUE(a.done());
  EXPECT_EQ(log.substr(6), "abc");
}

// A stack used by one fiber is used again by the next: thousands of fibers
// in a row, each with a deep frame, must neither run out of stacks nor see
// another's leftovers.
TEST(Fiber, StacksAreReusedAcrossManyFibers) {
  uint64_t sum = 0;
  const uint64_t mapped_before = sync::Fiber::stacks_mapped();
  for (int i = 0; i < 3000; i++) {
    sync::Fiber f([&sum, i] {
      volatile char frame[64 * 1024];
      for (size_t k = 0; k < sizeof frame; k += 4096) frame[k] = static_cast<char>(i);
      sum += static_cast<unsigned char>(frame[4096]);
    });
    f.resume();
    ASSERT_TRUE(f.done());
  }
  uint64_t want = 0;
  for (int i = 0; i < 3000; i++) want += static_cast<unsigned char>(static_cast<char>(i));
  EXPECT_EQ(sum, want);
  // One at a time, each fiber's stack is the one the last fiber gave back:
  // at most one new mapping (none if an earlier test left one cached).
  EXPECT_LE(sync::Fiber::stacks_mapped() - mapped_before, 1u);
}

// Under the engine every virtual thread runs on the same OS thread, so a
// plain thread_local is shared by all of them: this is the bug a per-vthread
// value left unregistered would have (lockdep asserting the wrong thread's
// locks, a SEAMCALL retried as the wrong vCPU).
thread_local int t_unregistered = 0;

TEST(Fiber, VirtualThreadsKeepTheirOwnLocksAndVcpu) {
  sync::MmuLock lock;
  Scripted s({0, 0, 1});  // a first; at its SPTE read, b
  sync::DetEngine e(s, {});
  sync::LockMode a_sees_before = sync::LockMode::Write, b_sees = sync::LockMode::Write, a_sees_after{};
  int a_vcpu_after = -2, b_vcpu = -2, b_unregistered = -1;
  uint64_t word = 0;
  e.spawn("a", [&] {
    VcpuLoadGuard load(3);
    lock.read_lock();
    t_unregistered = 7;
    a_sees_before = lock.held_by_me();
    sync::read_spte(&word);  // b runs here, while a holds the lock and vCPU 3
    a_sees_after = lock.held_by_me();
    a_vcpu_after = kvm_get_running_vcpu();
    lock.read_unlock();
  });
  e.spawn("b", [&] {
    b_sees = lock.held_by_me();
    b_vcpu = kvm_get_running_vcpu();
    b_unregistered = t_unregistered;
    sync::read_spte(&word);
  });
  ASSERT_TRUE(e.run());
  EXPECT_EQ(a_sees_before, sync::LockMode::Read);
  EXPECT_EQ(b_sees, sync::LockMode::None) << "b saw a's mmu_lock as its own";
  EXPECT_EQ(b_vcpu, -1) << "b saw a's loaded vCPU";
  EXPECT_EQ(a_sees_after, sync::LockMode::Read);
  EXPECT_EQ(a_vcpu_after, 3);
  // The hazard the registry exists for, shown on a thread_local not in it.
  EXPECT_EQ(b_unregistered, 7);
  // The caller's own values are back once the engine returns.
  EXPECT_EQ(kvm_get_running_vcpu(), -1);
  EXPECT_EQ(lock.held_by_me(), sync::LockMode::None);
}

TEST(Fiber, CallerValuesSurviveARun) {
  VcpuLoadGuard load(5);
  Scripted s({});
  sync::DetEngine e(s, {});
  int inside = -2;
  e.spawn("t", [&] { inside = kvm_get_running_vcpu(); });
  ASSERT_TRUE(e.run());
  EXPECT_EQ(inside, -1);
  EXPECT_EQ(kvm_get_running_vcpu(), 5);
}

// A deadlocked execution leaves its threads where they blocked. Their frames
// are never unwound: a destructor there would run MMU code (drop a lock,
// free a table) for an execution that is over. The next engine on the same
// OS thread runs as if nothing happened.
TEST(Fiber, DeadlockedThreadsAreNeverUnwound) {
  struct Flag {
    bool* set;
    ~Flag() { *set = true; }
  };
  bool unwound = false;
  {
    Scripted s({});
    auto e = std::make_unique<sync::DetEngine>(s, sync::DetLimits{});
    static const char never = 0;
    e->spawn("stuck", [&] {
      Flag f{&unwound};
      sync::wait_event(&never);
    });
    EXPECT_FALSE(e->run());
    EXPECT_EQ(e->abort_reason().rfind("deadlock", 0), 0u) << e->abort_reason();
    e.reset();
  }
  EXPECT_FALSE(unwound);
  Scripted s({});
  sync::DetEngine next(s, {});
  int ran = 0;
  for (int i = 0; i < 3; i++) next.spawn("t", [&] { ran++; });
  EXPECT_TRUE(next.run());
  EXPECT_EQ(ran, 3);
}

}  // namespace
}  // namespace mirrormmu::test
