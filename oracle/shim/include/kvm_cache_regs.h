/* SPDX-License-Identifier: GPL-2.0-only */
/* Nothing of kvm_cache_regs.h is reached by the TDP MMU. */
#include <linux/kvm_host.h>
