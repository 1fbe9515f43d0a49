// SPDX-License-Identifier: MIT
// Thread-locals that belong to a virtual thread, not to the OS thread under
// it: which mmu_locks it holds (lockdep), the SPTE change it is handling,
// the vCPU it has loaded. Natively each is an ordinary thread_local. Under
// the deterministic engine every virtual thread is a fiber on one OS thread,
// so the engine swaps their values in and out at each switch; the code that
// reads them stays as fast as a thread_local read.
//
// Each is registered once, from a static initializer in the file that
// defines it, with the value a new thread starts from.
#pragma once

#include <cstddef>
#include <vector>

namespace mirrormmu::sync {

using ThreadLocalAddress = void* (*)();
// Returns its index (a value to initialise a static with).
int register_vthread_local(ThreadLocalAddress address, const void* initial, size_t size);

// The values of every registered thread-local for one virtual thread.
class VthreadLocals {
 public:
  VthreadLocals();                // the values a new thread starts from
  void save();                    // this OS thread's current values into here
  void load() const;              // ... and back
 private:
  std::vector<unsigned char> bytes_;
};

}  // namespace mirrormmu::sync
