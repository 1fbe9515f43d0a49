/* SPDX-License-Identifier: GPL-2.0-only */
#include "kshim/core.h"
#define E820_TYPE_RAM 1
/* Every guest pfn handed to the oracle is RAM. */
static inline bool e820__mapped_raw_any(u64 start, u64 end, int type) { (void)start; (void)end; (void)type; return true; }
