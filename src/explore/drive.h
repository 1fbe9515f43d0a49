// SPDX-License-Identifier: MIT
// Driving one transition by hand: a small TD, an entry brought to the old
// kind by the normal paths (a fault, or an MMIO value written in place), then
// the new value applied through the MMU's own setter in the lock mode asked
// for — set_spte_atomic under the shared lock, tdp_mmu_set_spte under the
// exclusive one; a new table goes through tdp_mmu_link_sp, a huge leaf
// becoming a table through tdp_mmu_split_huge_page. It answers what a design
// would do with a transition no workload or scenario makes.
#pragma once

#include <string>
#include <vector>

#include "base/bug.h"
#include "spte/spte.h"

namespace mirrormmu::explore {

struct DriveOutcome {
  std::string outcome;                  // "accepted", "refused -16", "cannot be set up: ..."
  std::vector<Site> sites;              // hit while the change was applied
  std::vector<std::string> violations;  // invariants broken afterwards, and in teardown
};

DriveOutcome drive_transition(const std::string& design, spte::Kind old_kind, spte::Kind new_kind, bool shared,
                              bool mirror);

}  // namespace mirrormmu::explore
