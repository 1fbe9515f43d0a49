// SPDX-License-Identifier: MIT
// mmu_stress_test on a TD's shared memory: one memfd of -s bytes, mapped by
// as many memslots as fit in -m (64 by default, GPA [4G, 132G)), every one
// an alias of the same host pages. Each vCPU writes its share of the guest
// memory, has its MMU context reset, writes it again, reads it, and keeps
// writing while the host makes the memfd read-only (each write then fails
// with EFAULT) and writable again. The MMU notifier must unmap every alias
// of what the host changed: a writable mapping of read-only memory left in
// any slot is a guest writing memory the host protected. -c -m -s -H.
//
// Not as on hardware: KVM refuses KVM_SET_SREGS for a TD (its state is
// protected), so the "reset" stage calls what that ioctl does to the MMU,
// kvm_mmu_reset_context(), directly.
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "workload/memstress.h"

namespace mirrormmu {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kStartGpa = 4ull << 30;
// KVM_CAP_NR_MEMSLOTS on x86 (KVM_USER_MEM_SLOTS).
constexpr uint64_t kMaxSlots = 32764;

struct Layout {
  uint64_t slots = 0;      // memslots 1..slots
  uint64_t end_gpa = 0;    // the test memory is [kStartGpa, end_gpa)
  uint64_t vcpu_bytes = 0; // each vCPU's share
};

uint64_t backing_page(const WorkloadConfig& c) { return c.st.hugetlb ? 2ull << 20 : kPageSize; }

// The test's slot loop: slots of -s from 4G until -m is covered, the GPA
// space (a TD's shared alias ends at the shared bit) or the slot limit ends it.
Layout layout(const WorkloadConfig& c) {
  Layout l;
  const uint64_t max_gpa = 1ull << (c.ept_levels == 5 ? 51 : 47);
  for (uint64_t gpa = kStartGpa; l.slots + 1 < kMaxSlots && gpa + c.st.slot_size <= max_gpa &&
                                 gpa - kStartGpa < c.st.max_mem;
       gpa += c.st.slot_size)
    l.slots++;
  l.end_gpa = kStartGpa + l.slots * c.st.slot_size;
  l.vcpu_bytes = (l.end_gpa - kStartGpa) / uint64_t(c.vcpus) & ~(kPageSize - 1);
  return l;
}

std::string refusal(const WorkloadConfig& c) {
  if (c.st.slot_size == 0 || c.st.slot_size % backing_page(c))
    return fmt::format("-s {}: the slot size is not a multiple of the {} KiB memfd page", c.st.slot_size,
                       backing_page(c) >> 10);
  if (c.st.max_mem == 0) return "-m 0: Memory size must be greater than 0";
  if (c.st.max_mem > (1ull << 40)) return fmt::format("-m {}: more guest memory than the model takes (1 TiB)", c.st.max_mem);
  const uint64_t max_gpa = 1ull << (c.ept_levels == 5 ? 51 : 47);
  if (max_gpa <= 4 * c.st.slot_size) return fmt::format("-s {}: MAXPHYADDR <4gb", c.st.slot_size);
  if (layout(c).vcpu_bytes == 0)
    return fmt::format("-c {}: more vCPUs than pages of guest memory", c.vcpus);
  return "";
}

VmConfig vm_config(const WorkloadConfig& c) {
  const Layout l = layout(c);
  const uint64_t mapped = (l.end_gpa - kStartGpa) >> kPageShift;
  // The memfd once, then tables for every alias: a 4K table per 2M of
  // guest memory (the direct root maps each page), and room for the image.
  VmConfig v = td_vm_config(c, c.st.slot_size / kPageSize + mapped / 256 + mapped / 65536 +
                                   (kImageSlotSize >> kPageShift) + (16ull << 20 >> kPageShift));
  v.shared_backing = c.st.hugetlb ? PgLevel::k2M : PgLevel::k4K;
  return v;
}

double guest_gib(const WorkloadConfig& c) { return double(layout(c).end_gpa - kStartGpa) / double(1ull << 30); }

bool run(Driver& d, const WorkloadConfig& c, std::mt19937_64&) {
  Vm& vm = d.vm();
  const Layout l = layout(c);
  const uint64_t shared = vm.shared_gpa_bit();
  const int n = c.vcpus;
  d.op("create TD", [&] { return vm.create(); });
  d.op("add memslot 0: the guest image (guest_memfd)", [&] { return vm.add_memslot(0, 0, kImageSlotSize, kMemGuestMemfd); });
  std::shared_ptr<Backing> mem;
  d.op(fmt::format("memfd_create + mmap: {} MiB{}", c.st.slot_size >> 20, c.st.hugetlb ? " (MFD_HUGETLB)" : ""), [&] {
    mem = vm.create_host_memory(c.st.slot_size, c.st.hugetlb ? PgLevel::k2M : PgLevel::k4K);
    if (!mem) return -ENOMEM;
    // The test writes 0xaa to every page first: all of it is populated.
    for (uint64_t i = 0; i < mem->npages(); i++)
      if (!mem->get_pfn(i).valid()) return -ENOMEM;
    return 0;
  });
  d.op(fmt::format("add memslots 1-{}: each an alias of the memfd", l.slots), [&] {
    for (uint64_t s = 1; s <= l.slots; s++)
      if (int r = vm.add_memslot(int(s), kStartGpa + (s - 1) * c.st.slot_size, c.st.slot_size, 0, mem)) return r;
    return 0;
  });
  d.op(fmt::format("KVM_TDX_INIT_MEM_REGION {} pages (TDH.MEM.PAGE.ADD)", kImagePages),
       [&] { return vm.init_mem_region(0, kImagePages); });
  d.op("KVM_TDX_FINALIZE_VM", [&] { return vm.finalize(); });
  if (d.failed()) return false;
  d.print(fmt::format("Running with {}gb of guest memory and {} vCPUs", (l.end_gpa - kStartGpa) >> 30, n));

  const uint64_t pages = l.vcpu_bytes / kPageSize;
  auto gpa_of = [&](int v, uint64_t i) { return (kStartGpa + uint64_t(v) * l.vcpu_bytes + i * kPageSize) | shared; };
  // One guest stage: every page of the vCPU's share, in order. A write the
  // host refuses exits with EFAULT; the test skips the instruction.
  // `efaults` collects them, or any is an error when it is null.
  auto stage = [&](int v, bool write, std::vector<uint64_t>* efaults) {
    for (uint64_t i = 0; i < pages; i++) {
      const ExitReason e = vcpu_access_retrying(vm, v, gpa_of(v, i), write);
      if (e == ExitReason::None) continue;
      if (e == ExitReason::HostFault && efaults) {
        efaults->push_back(i);
        continue;
      }
      return e == ExitReason::VmDead ? -EIO : -EFAULT;
    }
    return 0;
  };
  auto t = Clock::now();
  std::vector<double> at;  // the release time of each rendezvous
  auto rendezvous = [&](const char* what) {
    d.print(fmt::format("Waiting for vCPUs to finish {}...", what));
    d.print(fmt::format("All vCPUs finished {}, releasing...", what));
    at.push_back(std::chrono::duration<double>(Clock::now() - t).count());
  };
  rendezvous("spawning");
  d.parallel("vCPUs write every page (stage 0)", n, [&](int v) { return stage(v, true, nullptr); });
  rendezvous("run 1");
  d.parallel("vCPUs reset their MMU context (CR0.WP toggled)", n, [&](int v) { return vm.reset_mmu_context(v); });
  rendezvous("reset");
  d.parallel("vCPUs write every page again (stage 1)", n, [&](int v) { return stage(v, true, nullptr); });
  rendezvous("run 2");
  if (d.failed()) return false;

  // Stage 2 reads, then stage 3 writes while the host makes the memfd
  // read-only: writes before the mprotect land, the rest fail.
  std::vector<std::vector<uint64_t>> efaults(static_cast<size_t>(n));
  d.parallel(
      "vCPUs read every page, then write while the host mprotects the memfd read-only (stages 2-3)", n,
      [&](int v) {
        if (int r = stage(v, false, nullptr)) return r;
        return stage(v, true, &efaults[size_t(v)]);
      },
      [&] { return vm.host_protect(mem, 0, c.st.slot_size, HostProt::ReadOnly); });
  // The guest loops until every vCPU has hit the read-only fault: once the
  // mprotect is done, every write must fail, in every alias.
  const std::string ro_stage = "vCPUs write the read-only memory: every write must fail with EFAULT (stage 3)";
  d.parallel(ro_stage, n, [&](int v) {
    std::vector<uint64_t> refused;
    if (int r = stage(v, true, &refused)) return r;
    if (refused.size() != pages)
      d.report("host_prot", fmt::format("vCPU {} wrote {} pages of read-only host memory (the first at gpa "
                                                   "{:#x}): a writable mapping survived the mprotect",
                                                   v, pages - refused.size(), gpa_of(v, 0) & ~shared));
    return 0;
  });
  rendezvous("mprotect RO");
  if (d.failed()) return false;

  // Stage 4: writes race the mprotect back to read-write. A write that
  // still finds the memory read-only is retried once it is writable.
  for (auto& e : efaults) e.clear();
  d.parallel(
      "vCPUs write while the host mprotects the memfd read-write (stage 4)", n,
      [&](int v) { return stage(v, true, &efaults[size_t(v)]); },
      [&] { return vm.host_protect(mem, 0, c.st.slot_size, HostProt::ReadWrite); });
  d.parallel("vCPUs retry the writes that met read-only memory (stage 4)", n, [&](int v) {
    for (uint64_t i : efaults[size_t(v)])
      if (vcpu_access_retrying(vm, v, gpa_of(v, i), true) != ExitReason::None) return -EFAULT;
    return 0;
  });
  rendezvous("mprotect RW");
  if (d.failed()) return false;
  auto span = [&](size_t i) { return selftest_time(at[i] - at[i - 1]); };
  d.print(fmt::format("run1 = {}, reset = {}, run2 = {}, ro = {}, rw = {}", span(1), span(2), span(3), span(4), span(5)));
  Chart& chart = d.chart("mmu-stress", "mmu_stress_test: each stage", "stage", "seconds", true);
  const char* names[] = {"run1", "reset", "run2", "ro", "rw"};
  for (size_t i = 1; i < at.size(); i++) {
    chart.xtics.push_back({double(i), names[i - 1]});
    chart.add("time", double(i), at[i] - at[i - 1]);
  }

  // Teardown: the even slots go, then the first half of the memfd is
  // unmapped under the odd ones (the VM itself is left to the notifier's
  // release at exit, here the TD's teardown).
  d.op("delete the even-numbered memslots", [&] {
    for (uint64_t s = l.slots & ~1ull; s >= 2; s -= 2)
      if (int r = vm.delete_memslot(int(s))) return r;
    return 0;
  });
  d.op("munmap the first half of the memfd", [&] { return vm.host_protect(mem, 0, c.st.slot_size / 2, HostProt::None); });
  return !d.failed();
}

}  // namespace

const WorkloadInfo& mmu_stress_workload() {
  static const WorkloadInfo w{"mmu-stress",
                              "mmu_stress_test on a TD's shared memory: memslots aliasing one memfd written, reset, "
                              "read, made read-only and writable again under the vCPUs; -c -m -s -H",
                              &vm_config, &run, &refusal, &guest_gib};
  return w;
}

}  // namespace mirrormmu
