// SPDX-License-Identifier: MIT
// The invariants of a plain VM's direct root, checked through the DirectMmu
// interface only, so they hold the model and the kernel's own tdp_mmu.c to
// the same standard: what a leaf maps, where huge pages may be, that page
// stats count what is there, that no written page escapes the dirty log.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "vm/direct_mmu.h"

namespace mirrormmu {

// What the VMM set up, which the MMU must agree with.
struct DirectLayout {
  struct Slot {
    uint64_t base = 0, npages = 0;
    bool dirty_log = false;
  };
  std::map<int, Slot> slots;
  // Pages the guest wrote since the last KVM_GET_DIRTY_LOG, per slot.
  std::map<int, std::vector<uint64_t>> written;
};

// The first broken invariant, named, or "" when all hold. Call it while no
// vCPU runs (it walks every root).
std::string check_direct(DirectMmu& mmu, const DirectLayout& layout);

// A collected dirty log must hold every page written since the previous
// one: the lost-dirty-bit invariant. Returns the first missing page or "".
std::string check_dirty_log(const DirectLayout::Slot& slot, const std::vector<uint64_t>& written,
                            const std::vector<uint64_t>& collected);

}  // namespace mirrormmu
