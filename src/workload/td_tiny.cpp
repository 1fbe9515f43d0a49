// SPDX-License-Identifier: MIT
// A TD's life in a few dozen pages: every phase of td-life, small enough
// that a test can run it once per fault-injection point.
#include <cerrno>

#include "workload/workload.h"

namespace mirrormmu {

namespace {

constexpr uint64_t kRamGpa = 1ull << 32;
constexpr uint64_t kRamPages = 16;
constexpr uint64_t kBufGpa = 1ull << 30;
constexpr uint64_t kBufPages = 16;

VmConfig td_tiny_vm(const WorkloadConfig& c) { return td_vm_config(c, 4096); }

int touch(Vm& vm, int vcpu, uint64_t gpa, uint64_t npages, bool write) {
  return touch_pages(vm, vcpu, gpa, npages, write);
}

bool td_tiny_run(Driver& d, const WorkloadConfig& c, std::mt19937_64& rng) {
  Vm& vm = d.vm();
  const uint64_t shared = vm.shared_gpa_bit();
  const int last = c.vcpus - 1;
  const uint64_t pick = rng() % (kRamPages - 4) + 2;  // a page to convert
  const uint64_t conv = kRamGpa + (pick << kPageShift);

  d.op("create TD", [&] { return vm.create(); });
  d.op("add memslot 0 (guest_memfd)", [&] { return vm.add_memslot(0, kRamGpa, kRamPages << kPageShift, kMemGuestMemfd); });
  d.op("add memslot 1 (shared)", [&] { return vm.add_memslot(1, kBufGpa, kBufPages << kPageShift, 0); });
  d.op("init mem region 2 pages", [&] { return vm.init_mem_region(kRamGpa, 2); });
  d.op("finalize", [&] { return vm.finalize(); });
  d.op("set RAM private", [&] { return vm.set_memory_attributes(kRamGpa, kRamPages << kPageShift, true); });
  d.op("populate private", [&] { return touch(vm, 0, kRamGpa, kRamPages / 2, true); });
  d.op("convert 2 pages to shared", [&] { return vm.set_memory_attributes(conv, 2 << kPageShift, false); });
  d.op("touch shared alias", [&] { return touch(vm, last, conv | shared, 2, true); });
  d.op("punch hole", [&] { return vm.punch_hole(conv, 2 << kPageShift); });
  d.op("convert back to private", [&] { return vm.set_memory_attributes(conv, 2 << kPageShift, true); });
  d.op("touch private again", [&] { return touch(vm, last, conv, 2, true); });
  d.op("populate shared buffer", [&] { return touch(vm, 0, kBufGpa | shared, kBufPages, true); });
  d.op("enable dirty logging", [&] { return vm.set_dirty_logging(1, true); });
  bool dirtied = false;
  d.op("dirty 3 pages", [&] {
    const int r = touch(vm, last, (kBufGpa | shared) + (3 << kPageShift), 3, true);
    dirtied = r == 0;
    return r;
  });
  d.op("get dirty log", [&] {
    auto bm = vm.get_dirty_log(1);
    if (!bm) return -EINVAL;
    if (dirtied && (*bm)[0] != (0x7ull << 3))
      d.report("dirty_log", "bitmap does not show exactly the 3 written pages");
    return 0;
  });
  d.op("delete memslot 1", [&] { return vm.delete_memslot(1); });
  return !d.failed();
}

}  // namespace

const WorkloadInfo& td_tiny_workload() {
  static const WorkloadInfo w{"td-tiny", "td-life in 32 pages, for tests that run a workload per injected fault",
                              &td_tiny_vm, &td_tiny_run};
  return w;
}

}  // namespace mirrormmu
