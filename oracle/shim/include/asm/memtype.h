/* SPDX-License-Identifier: GPL-2.0-only */
#include "kshim/core.h"
/* PAT is on and no guest pfn is immune to UC MTRRs: the answers a host with
 * ordinary RAM gives kvm_is_mmio_pfn(). */
static inline bool pat_enabled(void) { return true; }
static inline bool pat_pfn_immune_to_uc_mtrr(unsigned long pfn) { (void)pfn; return false; }
