// SPDX-License-Identifier: GPL-2.0-only
// What the bridge shares with the C++ side of the oracle.
#pragma once

#include <atomic>
#include <stdexcept>
#include <string>

#include "base/inject.h"

namespace mirrormmu::oracle {

// BUG_ON() in the tree's code: the operation stops here, as the kernel
// would stop the task; the VM is unusable afterwards (locks may be held).
struct KernelBug : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Armed failures for the tree's allocation sites (split tables, cache
// top-ups); when null, an engine's injection oracle answers instead.
extern std::atomic<FaultInjector*> g_injector;

}  // namespace mirrormmu::oracle
