// SPDX-License-Identifier: MIT
// The default workload: a TD's whole life, in the phases of the selftests
// (tdx_vm_test, private_mem_conversions_test, dirty_log_test, memslot churn).
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <fmt/format.h>

#include "workload/workload.h"

namespace mirrormmu {

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kRamGpa = 1ull << 32;       // guest RAM at 4 GiB, like memstress
constexpr uint64_t kBufGpa = 1ull << 30;       // a shared-only buffer slot at 1 GiB
constexpr uint64_t kBufSize = 8 * kMiB;
constexpr uint64_t kImagePages = 64;           // initial image added with PAGE.ADD
constexpr uint64_t kChunk = 2 * kMiB;          // one "populate" operation

uint64_t ram_size(const WorkloadConfig& c) {
  const uint64_t b = static_cast<uint64_t>(c.gib * double(1ull << 30));
  return std::max<uint64_t>(kChunk, b & ~(kChunk - 1));
}

VmConfig td_life_vm(const WorkloadConfig& c) {
  // Guest RAM is backed twice at most (private and, for converted ranges,
  // shared), plus page tables, S-EPT pages and the buffer slot.
  const uint64_t ram_pages = ram_size(c) >> kPageShift;
  return td_vm_config(c, ram_pages + ram_pages / 4 + (kBufSize >> kPageShift) * 2 + (32ull << 20 >> kPageShift));
}

// Touches every page of [gpa, gpa + size) from `vcpu` in a random order.
int touch(Vm& vm, int vcpu, uint64_t gpa, uint64_t size, bool write, std::mt19937_64& rng,
          PgLevel accept_level = PgLevel::k4K) {
  return touch_pages(vm, vcpu, gpa, size >> kPageShift, write, &rng, accept_level);
}

// How the guest accepts the chunk it populates: Linux accepts 2M at a time
// where it can; every fourth chunk is accepted page by page, which inside a
// 2M private mapping makes KVM demote it (and never map it huge again).
PgLevel populate_accept_level(uint64_t chunk) { return chunk % 4 == 3 ? PgLevel::k4K : PgLevel::k2M; }

bool td_life_run(Driver& d, const WorkloadConfig& c, std::mt19937_64& rng) {
  Vm& vm = d.vm();
  const uint64_t ram = ram_size(c);
  const uint64_t shared = vm.shared_gpa_bit();
  auto rnd = [&](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); };

  // Build.
  d.op("create TD", [&] { return vm.create(); });
  d.op(fmt::format("add memslot 0: RAM {} MiB with guest_memfd", ram / kMiB),
       [&] { return vm.add_memslot(0, kRamGpa, ram, kMemGuestMemfd); });
  d.op(fmt::format("add memslot 1: shared buffer {} MiB", kBufSize / kMiB),
       [&] { return vm.add_memslot(1, kBufGpa, kBufSize, 0); });
  d.op(fmt::format("KVM_TDX_INIT_MEM_REGION {} pages (TDH.MEM.PAGE.ADD)", kImagePages),
       [&] { return vm.init_mem_region(kRamGpa, kImagePages); });
  d.op("KVM_TDX_FINALIZE_VM", [&] { return vm.finalize(); });
  d.op("set RAM private", [&] { return vm.set_memory_attributes(kRamGpa, ram, true); });

  // Populate: each vCPU its own slice (demand paging). With the native
  // engine the vCPUs fault concurrently; otherwise 2 MiB per operation.
  const uint64_t chunks = ram / kChunk;
  auto vcpu_of_chunk = [&](uint64_t i) { return static_cast<int>(i * c.vcpus / chunks); };
  if (d.threads()) {
    d.parallel("vCPUs populate private RAM", c.vcpus, [&](int v) {
      std::mt19937_64 vrng(c.seed * 1000003 + v);
      for (uint64_t i = 0; i < chunks; i++)
        if (vcpu_of_chunk(i) == v)
          if (int r = touch(vm, v, kRamGpa + i * kChunk, kChunk, true, vrng, populate_accept_level(i))) return r;
      return 0;
    });
  } else {
    for (uint64_t i = 0; i < chunks && !d.failed(); i++) {
      const uint64_t gpa = kRamGpa + i * kChunk;
      d.op(fmt::format("vCPU{} populates private {:#x}+2M", vcpu_of_chunk(i), gpa),
           [&] { return touch(vm, vcpu_of_chunk(i), gpa, kChunk, true, rng, populate_accept_level(i)); });
    }
  }

  // Conversions (private_mem_conversions_test): a range goes shared, is used
  // through the shared alias, its private pages are punched out, and it comes
  // back private. Sizes from one page to 2M+4K, unaligned ones included.
  const int conversions = static_cast<int>(std::min<uint64_t>(16, chunks * 2));
  for (int i = 0; i < conversions && !d.failed(); i++) {
    const uint64_t npages = 1 + rnd(kSptePerPage + 1);
    const uint64_t first = rnd((ram >> kPageShift) - npages);
    const uint64_t gpa = kRamGpa + (first << kPageShift), size = npages << kPageShift;
    const int vcpu = static_cast<int>(rnd(c.vcpus));
    d.op(fmt::format("convert {:#x}+{:#x} private->shared", gpa, size),
         [&] { return vm.set_memory_attributes(gpa, size, false); });
    d.op(fmt::format("vCPU{} writes shared {:#x}+{:#x}", vcpu, gpa | shared, size),
         [&] { return touch(vm, vcpu, gpa | shared, size, true, rng); });
    d.op(fmt::format("punch hole {:#x}+{:#x}", gpa, size), [&] { return vm.punch_hole(gpa, size); });
    d.op(fmt::format("convert {:#x}+{:#x} shared->private", gpa, size),
         [&] { return vm.set_memory_attributes(gpa, size, true); });
    d.op(fmt::format("vCPU{} writes private {:#x}+{:#x}", vcpu, gpa, size),
         [&] { return touch(vm, vcpu, gpa, size, true, rng); });
  }

  // Conversion storm (tdx_upm_parallel_test): the vCPUs keep touching pages
  // of a zone through whichever alias the page has right now, while the
  // VMM converts ranges of it back and forth and punches holes. A vCPU that
  // loses the race exits to userspace (a memory fault), as a real one would.
  const uint64_t zone_pages = std::min<uint64_t>(ram >> kPageShift, 2 * kSptePerPage);
  std::atomic<bool> storm_done{false};
  d.parallel(
      "conversion storm: vCPUs touch a zone while the VMM converts it", c.vcpus,
      [&](int v) {
        std::mt19937_64 vrng(c.seed * 7919 + v);
        // On real threads the vCPUs keep going until the VMM is done; under
        // the explorer the schedule decides who runs, so a fixed number of
        // accesses (a thread that waits for another without a scheduling
        // choice of its own would just spin).
        for (int k = 0; k < 256 || (d.threads() && !d.explored() && !storm_done.load()); k++) {
          const uint64_t p = std::uniform_int_distribution<uint64_t>(0, zone_pages - 1)(vrng);
          const uint64_t gpa = kRamGpa + (p << kPageShift);
          const bool priv = vm.gfn_is_private(Gfn::from_gpa(gpa));
          if (vm.vcpu_access(v, priv ? gpa : gpa | shared, true) == ExitReason::VmDead) return -EIO;
        }
        return 0;
      },
      [&] {
        std::mt19937_64 vrng(c.seed * 104729);
        for (int k = 0; k < 8; k++) {
          const uint64_t n = 1 + std::uniform_int_distribution<uint64_t>(0, 63)(vrng);
          const uint64_t p = std::uniform_int_distribution<uint64_t>(0, zone_pages - n)(vrng);
          const uint64_t gpa = kRamGpa + (p << kPageShift), size = n << kPageShift;
          if (int r = vm.set_memory_attributes(gpa, size, false)) return r;
          if (int r = vm.punch_hole(gpa, size)) return r;
          if (int r = vm.set_memory_attributes(gpa, size, true)) return r;
        }
        storm_done.store(true);
        return 0;
      });

  // Emulated MMIO through the shared alias of an unbacked GPA.
  d.op("vCPU0 reads MMIO", [&] {
    return vm.vcpu_access(0, (3ull << 30) | shared, false) == ExitReason::Mmio ? 0 : -EFAULT;
  });

  // Dirty logging on the shared buffer (dirty_log_test): populate, enable,
  // then rounds of random writes, each checked against the bitmap.
  const uint64_t buf = kBufGpa | shared;
  d.op("vCPU0 populates the shared buffer", [&] { return touch(vm, 0, buf, kBufSize, true, rng); });
  d.op("enable dirty logging on memslot 1", [&] { return vm.set_dirty_logging(1, true); });
  for (int round = 0; round < 4 && !d.failed(); round++) {
    // Each vCPU dirties its own random pages; the bitmap must be their union.
    std::vector<std::vector<uint64_t>> want(c.vcpus, std::vector<uint64_t>((kBufSize >> kPageShift) / 64, 0));
    d.parallel(fmt::format("vCPUs dirty the buffer (round {})", round), c.vcpus, [&](int v) {
      std::mt19937_64 vrng(c.seed * 31 + round * 131 + v);
      for (int k = 0; k < 256 / c.vcpus + 1; k++) {
        const uint64_t p = std::uniform_int_distribution<uint64_t>(0, (kBufSize >> kPageShift) - 1)(vrng);
        want[v][p / 64] |= 1ull << (p % 64);
        if (vm.vcpu_access(v, buf + (p << kPageShift), true) != ExitReason::None) return -EFAULT;
      }
      return 0;
    });
    d.op(fmt::format("KVM_GET_DIRTY_LOG memslot 1 (round {})", round), [&] {
      auto got = vm.get_dirty_log(1);
      if (!got) return -EINVAL;
      std::vector<uint64_t> all(got->size(), 0);
      for (const auto& w : want)
        for (size_t i = 0; i < all.size(); i++) all[i] |= w[i];
      if (*got != all) {
        uint64_t missing = 0, extra = 0;
        for (size_t w = 0; w < all.size(); w++) {
          missing += __builtin_popcountll(all[w] & ~(*got)[w]);
          extra += __builtin_popcountll((*got)[w] & ~all[w]);
        }
        d.report("dirty_log", fmt::format("{} written pages not reported, {} reported but not written",
                                                     missing, extra));
      }
      return 0;
    });
  }
  d.op("disable dirty logging on memslot 1", [&] { return vm.set_dirty_logging(1, false); });
  d.op("delete memslot 1", [&] { return vm.delete_memslot(1); });
  // Touch private memory once more after the churn.
  d.op("vCPU0 rereads the image", [&] { return touch(vm, 0, kRamGpa, kImagePages << kPageShift, false, rng); });
  return !d.failed();
}

}  // namespace

const std::vector<WorkloadInfo>& workloads() {
  static const std::vector<WorkloadInfo> all = {
      {"td-life",
       "a TD's whole life: build with PAGE.ADD, finalize, populate, convert private<->shared, "
       "dirty-log a shared slot, delete it, tear down",
       &td_life_vm, &td_life_run},
      td_tiny_workload(),
      demand_paging_workload(),
      dirty_log_perf_workload(),
      private_mem_conversions_workload(),
      mmu_stress_workload(),
      pre_fault_memory_workload(),
  };
  return all;
}

const WorkloadInfo* find_workload(const std::string& name) {
  for (const auto& w : workloads())
    if (w.name == name) return &w;
  return nullptr;
}

}  // namespace mirrormmu
