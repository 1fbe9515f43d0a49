// SPDX-License-Identifier: MIT
// Factories of the hook designs; the registry in mmu/design.cpp lists them.
#pragma once

#include <memory>

#include "mmu/design.h"

namespace mirrormmu {

std::unique_ptr<HookDesign> make_upstream_design();
std::unique_ptr<HookDesign> make_upstream_rcu_design();
std::unique_ptr<HookDesign> make_hugepage_v5_design();
std::unique_ptr<HookDesign> make_baseline_design();
std::unique_ptr<HookDesign> make_centralized_design();
std::unique_ptr<HookDesign> make_centralized_rfc_design();
std::unique_ptr<HookDesign> make_split_hook_design();
std::unique_ptr<HookDesign> make_single_hook_design();

}  // namespace mirrormmu
