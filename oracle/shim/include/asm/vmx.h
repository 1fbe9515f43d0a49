/* SPDX-License-Identifier: GPL-2.0-only */
/* The EPT bits themselves come from the tree (generated/tree_decls.h). */
#include <linux/kvm_host.h>
#define X86_MEMTYPE_UC 0ull
#define X86_MEMTYPE_WB 6ull
