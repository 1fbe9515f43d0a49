// SPDX-License-Identifier: MIT
// percpu_counter.h declares glibc's rseq symbols itself and reads cpu_id at
// a fixed offset; here the real header says whether both still hold (a
// declaration that disagrees with it does not compile).
#include "base/percpu_counter.h"

#include <sys/rseq.h>

#include <cstddef>

static_assert(offsetof(struct rseq, cpu_id) == mirrormmu::detail::kRseqCpuIdOffset);
static_assert(sizeof(static_cast<struct rseq*>(nullptr)->cpu_id) == sizeof(uint32_t));
