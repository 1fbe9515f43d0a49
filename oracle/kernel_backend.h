// SPDX-License-Identifier: GPL-2.0-only
#pragma once

namespace mirrormmu::oracle {
// Makes `--mmu kernel` available (vm/direct_mmu.h's registry).
void register_kernel_mmu();
}  // namespace mirrormmu::oracle
