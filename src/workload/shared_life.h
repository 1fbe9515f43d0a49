// SPDX-License-Identifier: MIT
// shared-life: a plain VM's shared memory through its life, on any
// DirectMmu (the model, or with --mmu kernel the kernel tree's own
// tdp_mmu.c). Modelled on dirty_log_perf_test: vCPUs populate their share
// of guest memory, then dirty-logging iterations (each vCPU writes a random
// part of its share, the VMM collects the log), then the VMM's disruptions
// (a range zap, a fast zap, eager splitting, a memslot deleted and re-added)
// while the vCPUs touch memory again, then destruction. The invariants of
// check/direct_checker.h are checked after every phase and every dirty-log
// collection is checked for lost pages.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vm/direct_mmu.h"

namespace mirrormmu {

struct SharedLifeConfig {
  uint64_t seed = 1;
  double gib = 0.5;
  int vcpus = 2;
  int iterations = 3;     // dirty-logging rounds (dirty_log_perf_test -i)
  bool huge_pages = false;  // host memory in 2M pages (THP)
  bool threads = true;    // vCPUs on their own threads (else in turn)
  bool check = true;
};

struct SharedLifeResult {
  std::string mmu;            // DirectMmu::name()
  uint64_t ops = 0;           // phases and collections run
  uint64_t faults = 0, spurious = 0, retries = 0;
  uint64_t dirty_pages = 0;   // pages reported by the dirty log in all rounds
  int64_t leaked_tables = 0;  // page-table pages accounted after destruction
  double seconds = 0;
  std::string failure;        // the first broken invariant, or ""
  int exit_code = 0;          // 0 clean, 1 invariant broken
};

// Runs the workload on `mmu` (fresh, no memslots); destroys it at the end.
SharedLifeResult run_shared_life(DirectMmu& mmu, const SharedLifeConfig& cfg);

}  // namespace mirrormmu
