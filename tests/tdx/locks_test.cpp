// SPDX-License-Identifier: MIT
// The module's try-only sharex lock: the primitive behind every BUSY status
// once calls stop being serialized by the module mutex.
#include <gtest/gtest.h>

#include "tdx/module_impl.h"

namespace mirrormmu::tdx {
namespace {

TEST(TdxSharexLock, SharedHoldersCoexist) {
  SharexLock l;
  EXPECT_TRUE(l.try_lock(LockMode::Shared));
  EXPECT_TRUE(l.try_lock(LockMode::Shared));
  EXPECT_FALSE(l.try_lock(LockMode::Exclusive));
  l.unlock(LockMode::Shared);
  EXPECT_FALSE(l.try_lock(LockMode::Exclusive));
  l.unlock(LockMode::Shared);
  EXPECT_TRUE(l.try_lock(LockMode::Exclusive));
}

TEST(TdxSharexLock, ExclusiveExcludesEveryone) {
  SharexLock l;
  ASSERT_TRUE(l.try_lock(LockMode::Exclusive));
  EXPECT_FALSE(l.try_lock(LockMode::Shared));
  EXPECT_FALSE(l.try_lock(LockMode::Exclusive));
  l.unlock(LockMode::Exclusive);
  EXPECT_TRUE(l.try_lock(LockMode::Shared));
}

TEST(TdxOpStates, Membership) {
  constexpr OpStates s{OpState::Initialized, OpState::Runnable};
  static_assert(s.has(OpState::Runnable));
  EXPECT_TRUE(s.has(OpState::Initialized));
  EXPECT_FALSE(s.has(OpState::Uninitialized));
  EXPECT_FALSE(kBuildOrRun.has(OpState::Uninitialized));
}

}  // namespace
}  // namespace mirrormmu::tdx
