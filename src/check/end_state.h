// SPDX-License-Identifier: MIT
// A digest of what an execution leaves behind, for comparing two searches of
// the same scenario (with and without partial-order reduction): every root's
// leaves and tables, the S-EPT's entries. Page frame numbers are left out:
// they name pages in the order the pool handed them out, which differs
// between equivalent interleavings without meaning anything.
#pragma once

#include <cstdint>

namespace mirrormmu {

class Vm;
class DirectMmu;

uint64_t end_state_digest(Vm& vm);
uint64_t end_state_digest(DirectMmu& mmu);

}  // namespace mirrormmu
