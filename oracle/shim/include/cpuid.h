/* SPDX-License-Identifier: GPL-2.0-only */
/* Nothing of cpuid.h is reached by the TDP MMU. */
#include <linux/kvm_host.h>
