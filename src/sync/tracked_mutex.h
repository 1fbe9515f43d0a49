// SPDX-License-Identifier: MIT
// A host mutex guarding state that scheduling points do not name (the page
// pool, the TDP MMU's page lists, the host's own page tables). It is not a
// scheduling point: the deterministic engine never switches inside such a
// section, so the mutex itself never blocks there. But two steps that take it
// touch the same state, so partial-order reduction must keep their order:
// lock() says so (sched_touch) before taking it.
#pragma once

#include <mutex>

#include "sync/sched.h"

namespace mirrormmu::sync {

class TrackedMutex : public std::mutex {
 public:
  void lock() {
    sched_touch(this);
    std::mutex::lock();
  }
  bool try_lock() {
    sched_touch(this);
    return std::mutex::try_lock();
  }
};

// The same for state a recursive mutex guards (the TDX module's: a SEAMCALL
// and the vCPU-side entry points such as TD exit all take it).
class TrackedRecursiveMutex : public std::recursive_mutex {
 public:
  void lock() {
    sched_touch(this);
    std::recursive_mutex::lock();
  }
  bool try_lock() {
    sched_touch(this);
    return std::recursive_mutex::try_lock();
  }
};

}  // namespace mirrormmu::sync
