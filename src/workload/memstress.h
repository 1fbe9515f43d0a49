// SPDX-License-Identifier: MIT
// What the selftests share through lib/memstress.c and lib/test_util.c, for
// the workloads modelled on them: where the test memory goes (the top of the
// guest's private GPA space, one slot or several), which vCPU touches which
// part, the backing source names of -s, and the "%ld.%.9lds" times.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "workload/workload.h"

namespace mirrormmu {

struct Memstress {
  uint64_t gpa = 0;        // first byte of the test memory
  uint64_t size = 0;       // vcpus * bytes per vCPU
  uint64_t page = 4096;    // the guest page the passes step by
  int vcpus = 1;
  bool overlap = false;
  // The range vCPU `v` touches.
  uint64_t vcpu_gpa(int v) const { return overlap ? gpa : gpa + uint64_t(v) * (size / uint64_t(vcpus)); }
  uint64_t vcpu_bytes() const { return overlap ? size : size / uint64_t(vcpus); }
};

// memstress_create_vm()'s layout for this config on a TD with `ept_levels`:
// the test memory ends one page below the end of the private GPA space,
// aligned down to the backing page.
Memstress memstress_layout(const WorkloadConfig& c);

// -s: the backing page size of a selftest backing source name (4K or 2M;
// nothing TDX cannot map privately), or nullopt.
std::optional<uint64_t> backing_page_size(const std::string& name);
// "" or why -s names no backing TDX maps privately, or a 2M one without
// --huge-pages.
std::string backing_refusal(const WorkloadConfig& c);
// "" or why -s/-b/-v cannot describe a memstress run.
std::string memstress_refusal(const WorkloadConfig& c);

// The guest memory of a memstress run (-v x -b), in GiB.
double memstress_gib(const WorkloadConfig& c);

// A TD config for the memstress memory plus `extra_pages` (tables, images).
VmConfig memstress_vm_config(const WorkloadConfig& c, uint64_t extra_pages);

// test_util's "%ld.%.9lds".
std::string selftest_time(double seconds);
// The two lines memstress_create_vm() prints.
void print_memstress_header(Driver& d, const Memstress& m, int ept_levels);
// Slot 0, the guest's image: 2M of guest_memfd at GPA 0, 16 pages added
// with PAGE.ADD, and the TD finalized once the test slots are in.
constexpr uint64_t kImageSlotSize = 2ull << 20;
constexpr uint64_t kImagePages = 16;

}  // namespace mirrormmu
