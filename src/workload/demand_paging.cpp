// SPDX-License-Identifier: MIT
// demand_paging_test on a TD: every vCPU makes one pass over its part of the
// test memory (all of it with -o), each first touch a fault that maps a
// private page (TDH.MEM.PAGE.AUG, and the guest's accept), and the test
// prints the selftest's figures. -v vCPUs, -b bytes per vCPU, -s backing
// (4K or 2M private pages), -o overlap. No userfaultfd: the model has no
// host page faults to defer, so -u/-d/-r have nothing to act on.
#include <fmt/format.h>

#include <chrono>

#include "workload/memstress.h"

namespace mirrormmu {

namespace {

VmConfig demand_paging_vm(const WorkloadConfig& c) { return memstress_vm_config(c, 0); }

bool demand_paging_run(Driver& d, const WorkloadConfig& c, std::mt19937_64&) {
  Vm& vm = d.vm();
  const Memstress m = memstress_layout(c);
  const PgLevel accept = m.page > kPageSize ? PgLevel::k2M : PgLevel::k4K;
  print_memstress_header(d, m, c.ept_levels);
  d.op("create TD", [&] { return vm.create(); });
  d.op("add memslot 0: the guest image (guest_memfd)", [&] { return vm.add_memslot(0, 0, kImageSlotSize, kMemGuestMemfd); });
  d.op(fmt::format("add memslot 1: {} MiB of test memory (guest_memfd)", m.size >> 20),
       [&] { return vm.add_memslot(1, m.gpa, m.size, kMemGuestMemfd); });
  d.op(fmt::format("KVM_TDX_INIT_MEM_REGION {} pages (TDH.MEM.PAGE.ADD)", kImagePages),
       [&] { return vm.init_mem_region(0, kImagePages); });
  d.op("KVM_TDX_FINALIZE_VM", [&] { return vm.finalize(); });
  d.op("set the test memory private", [&] { return vm.set_memory_attributes(m.gpa, m.size, true); });
  if (d.failed()) return false;
  d.print("Finished creating vCPUs and starting uffd threads");
  d.print("Started all vCPUs");
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<double> vcpu_seconds(static_cast<size_t>(c.vcpus), 0);
  d.parallel("vCPUs demand-page the test memory", c.vcpus, [&](int v) {
    const auto start = std::chrono::steady_clock::now();
    const int r = touch_pages(vm, v, m.vcpu_gpa(v), m.vcpu_bytes() / kPageSize, true, nullptr, accept);
    vcpu_seconds[size_t(v)] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return r;
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (d.failed()) return false;
  d.print("All vCPU threads joined");
  // memstress counts guest (4K) pages, whatever backs them.
  const double per_vcpu = double(m.vcpu_bytes() / kPageSize) / std::max(seconds, 1e-9);
  d.print(fmt::format("Total guest execution time:\t{}", selftest_time(seconds)));
  d.print(fmt::format("Per-vcpu demand paging rate:\t{:f} pgs/sec/vcpu", per_vcpu));
  d.print(fmt::format("Overall demand paging rate:\t{:f} pgs/sec", per_vcpu * c.vcpus));
  Chart& chart = d.chart("demand-paging", "demand_paging_test: each vCPU's rate", "vCPU", "pages per second", true);
  for (int v = 0; v < c.vcpus; v++)
    chart.add("demand paging rate", v, double(m.vcpu_bytes() / kPageSize) / std::max(vcpu_seconds[size_t(v)], 1e-9));
  return true;
}

}  // namespace

const WorkloadInfo& demand_paging_workload() {
  static const WorkloadInfo w{"demand-paging",
                              "demand_paging_test: each vCPU faults in its part of the private test memory in one "
                              "pass; -v vCPUs, -b bytes per vCPU, -s backing, -o overlap",
                              &demand_paging_vm, &demand_paging_run, &memstress_refusal, &memstress_gib};
  return w;
}

}  // namespace mirrormmu
