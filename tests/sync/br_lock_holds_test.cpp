// SPDX-License-Identifier: MIT
// A thread's table of holds (sync/br_lock.h): the reader slot a shared hold
// marks is the one its release clears, whatever order the locks are dropped
// in. The classic bug of such a table is clearing the wrong slot: a writer
// then either waits for a reader long gone (a stale mark) or walks in beside
// one still inside (its mark cleared by someone else's release). Each test
// below looks for both, from a writer on another thread.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <thread>
#include <memory>
#include <vector>

#include "sync/br_lock.h"

namespace mirrormmu::test {
namespace {

using sync::BrLock;
using namespace std::chrono_literals;

using LockPtr = std::shared_ptr<BrLock>;

// A writer on another thread that takes the lock and lets go at once. It is
// detached and shares the lock: a broken table may keep it out for good,
// and the test must then fail, not hang or free the lock under it.
class Writer {
 public:
  explicit Writer(LockPtr l) : done_(std::make_shared<std::atomic<bool>>(false)) {
    std::thread([l, d = done_] {
      l->lock();
      l->unlock();
      d->store(true);
    }).detach();
  }
  bool got_in_within(std::chrono::milliseconds t) const {
    const auto end = std::chrono::steady_clock::now() + t;
    while (!done_->load()) {
      if (std::chrono::steady_clock::now() > end) return false;
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }

 private:
  std::shared_ptr<std::atomic<bool>> done_;
};

// The writer must stay out while this thread holds `l` shared.
void expect_kept_out(const LockPtr& l, const char* what) {
  Writer w(l);
  EXPECT_FALSE(w.got_in_within(50ms)) << what << ": a writer got in beside a reader";
  l->unlock_shared();
  EXPECT_TRUE(w.got_in_within(10s)) << what << ": the writer never got in once the reader left";
}

// Every lock free again: a writer gets each one at once.
void expect_all_free(const std::vector<LockPtr>& locks) {
  for (size_t i = 0; i < locks.size(); i++) {
    EXPECT_EQ(locks[i]->held_by_me(), BrLock::Held::None) << "lock " << i;
    EXPECT_TRUE(Writer(locks[i]).got_in_within(10s)) << "lock " << i << " is still marked as read";
  }
}

// The three ways in of a shared hold: a reader shard (symmetric), a reader
// slot (asymmetric), and the bias of a lock's first taker (the TDX module's
// lock), which the first writer from another thread revokes, after which
// this thread's reads are the symmetric kind.
enum class Kind { Symmetric, Asymmetric, Biased };

class BrLockHolds : public ::testing::TestWithParam<Kind> {
 protected:
  std::vector<LockPtr> make(size_t n) {
    std::vector<LockPtr> v;
    for (size_t i = 0; i < n; i++)
      v.push_back(GetParam() == Kind::Asymmetric ? std::make_shared<BrLock>(BrLock::Readers::Asymmetric)
                  : GetParam() == Kind::Biased
                      ? std::make_shared<BrLock>(BrLock::Readers::Symmetric, BrLock::Bias::FirstThread)
                      : std::make_shared<BrLock>(BrLock::Readers::Symmetric));
    return v;
  }
};
INSTANTIATE_TEST_SUITE_P(Readers, BrLockHolds, ::testing::Values(Kind::Symmetric, Kind::Asymmetric, Kind::Biased),
                         [](const auto& info) {
                           return info.param == Kind::Symmetric    ? "Symmetric"
                                  : info.param == Kind::Asymmetric ? "Asymmetric"
                                                                   : "Biased";
                         });

TEST_P(BrLockHolds, ReleasedOutOfOrderEachReaderStaysUntilItLeaves) {
  auto l = make(4);
  l[0]->lock_shared();
  l[1]->lock_shared();
  l[2]->lock_shared();
  // The bottom hold goes first, leaving a hole under two live ones.
  l[0]->unlock_shared();
  EXPECT_EQ(l[0]->held_by_me(), BrLock::Held::None);
  EXPECT_EQ(l[1]->held_by_me(), BrLock::Held::Shared);
  // The next lock fills the hole; its release must clear its own mark.
  l[3]->lock_shared();
  EXPECT_EQ(l[3]->held_by_me(), BrLock::Held::Shared);
  expect_kept_out(l[1], "middle hold, released first");
  expect_kept_out(l[3], "hold in the hole");
  expect_kept_out(l[2], "top hold, released last");
  expect_all_free(l);
}

TEST_P(BrLockHolds, EveryHoldOfAFullTableIsItsOwn) {
  auto l = make(sync::detail::kMaxBrHolds);
  for (auto& x : l) x->lock_shared();
  // Released from the middle out: the table shrinks only once its top is free.
  const std::array<size_t, 8> order{3, 4, 2, 5, 1, 6, 0, 7};
  static_assert(order.size() == sync::detail::kMaxBrHolds);
  for (size_t k = 0; k < order.size(); k++) {
    for (size_t j = k; j < order.size(); j++)
      EXPECT_EQ(l[order[j]]->held_by_me(), BrLock::Held::Shared) << "lock " << order[j] << " after " << k << " releases";
    expect_kept_out(l[order[k]], "a hold of a full table");
  }
  expect_all_free(l);
}

TEST_P(BrLockHolds, SharedInsideExclusiveIsTheWritersUntilBothAreGone) {
  auto l = make(2);
  BrLock& a = *l[0];
  a.lock();
  a.lock_shared();
  EXPECT_EQ(a.held_by_me(), BrLock::Held::Exclusive);
  EXPECT_TRUE(a.held_alone_by_me());
  a.unlock_shared();
  EXPECT_EQ(a.held_by_me(), BrLock::Held::Exclusive);
  // Recursion both ways around another lock's hold.
  l[1]->lock_shared();
  a.lock();
  a.unlock();
  l[1]->unlock_shared();
  EXPECT_EQ(a.held_by_me(), BrLock::Held::Exclusive);
  a.unlock();
  expect_all_free(l);
}

TEST_P(BrLockHolds, NestedReadsLeaveWithTheOutermost) {
  auto l = make(1);
  BrLock& a = *l[0];
  a.lock_shared();
  a.lock_shared();
  a.lock_shared();
  a.unlock_shared();
  a.unlock_shared();
  EXPECT_EQ(a.held_by_me(), BrLock::Held::Shared);
  expect_kept_out(l[0], "the outermost of three reads");
  expect_all_free(l);
}

// A writer from another thread came and went (for a biased lock, that
// revoked the bias): this thread's next reads take the ordinary way in, and
// still keep writers out.
TEST_P(BrLockHolds, ReadsAfterAWriterCameAndWentStillKeepWritersOut) {
  auto l = make(2);
  l[0]->lock_shared();
  l[0]->unlock_shared();
  ASSERT_TRUE(Writer(l[0]).got_in_within(10s));
  l[1]->lock_shared();
  l[0]->lock_shared();
  EXPECT_FALSE(l[0]->held_alone_by_me()) << "no bias is left to hold it alone by";
  expect_kept_out(l[0], "a read after a writer");
  expect_kept_out(l[1], "the read under it");
  expect_all_free(l);
}

TEST(BrLockHoldsDeath, UnlockingWhatThisThreadDoesNotHoldAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  BrLock a(BrLock::Readers::Asymmetric);
  EXPECT_DEATH(a.unlock_shared(), "does not hold it");
  EXPECT_DEATH(a.unlock(), "does not hold it");
  a.lock_shared();
  EXPECT_DEATH(a.unlock(), "only shared");
  a.unlock_shared();
}

}  // namespace
}  // namespace mirrormmu::test
