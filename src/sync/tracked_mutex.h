// SPDX-License-Identifier: MIT
// A host mutex guarding state that scheduling points do not name (the page
// pool, the TDP MMU's page lists, the host's own page tables, the TDX
// module's state). It is not a scheduling point: the deterministic engine
// never switches inside such a section, so the mutex itself never blocks
// there. But two steps that take it touch the same state, so partial-order
// reduction must keep their order: lock() says so (sched_touch) before
// taking it.
#pragma once

#include <mutex>

#include "sync/sched.h"

namespace mirrormmu::sync {

template <class Base>
class Tracked : public Base {
 public:
  using Base::Base;
  void lock() {
    sched_touch(this);
    Base::lock();
  }
  bool try_lock() {
    sched_touch(this);
    return Base::try_lock();
  }
  void lock_shared() {
    sched_touch(this);
    Base::lock_shared();
  }
};

using TrackedMutex = Tracked<std::mutex>;
using TrackedRecursiveMutex = Tracked<std::recursive_mutex>;

}  // namespace mirrormmu::sync
