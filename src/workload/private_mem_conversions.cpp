// SPDX-License-Identifier: MIT
// private_mem_conversions_test on a TD. Each vCPU owns a 2M+4K area (4M
// apart) in guest_memfd slots split -m ways, starts shared, and converts the
// sub-ranges (0,4K), (0,2M), (4K,4K), (4K,2M), (2M,4K) between shared and
// private through the MAP_GPA hypercall's exit, touching them through the
// right alias each time, first without and then with fallocate (holes
// punched as pages go shared), then punches holes in private memory that
// stays private. The vCPUs do it concurrently, each on its own thread,
// exiting to userspace for each conversion as the selftest's vCPUs do.
// The model has no memory contents: where the selftest compares bytes, the
// vCPU reads the page (it must map on the side it was converted to).
#include <fmt/format.h>

#include <atomic>
#include <chrono>

#include "workload/memstress.h"

namespace mirrormmu {

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kBase = 4ull << 30;              // the first slot's GPA
constexpr uint64_t kDataSize = 2 * kMiB + kPageSize;  // PER_CPU_DATA_SIZE
constexpr int kFirstSlot = 10;

struct SubRange {
  uint64_t offset, size;
};
constexpr SubRange kRanges[] = {{0, kPageSize}, {0, 2 * kMiB}, {kPageSize, kPageSize}, {kPageSize, 2 * kMiB},
                                {2 * kMiB, kPageSize}};

uint64_t per_cpu_size(const WorkloadConfig& c) {
  const uint64_t align = std::max<uint64_t>(2 * kMiB, backing_page_size(c.st.backing).value_or(kPageSize));
  return (kDataSize + align - 1) & ~(align - 1);
}

VmConfig pmc_vm(const WorkloadConfig& c) {
  const uint64_t pages = per_cpu_size(c) * uint64_t(c.vcpus) / kPageSize;
  // Private and shared backing of every page, tables, slot 0.
  VmConfig v = td_vm_config(c, 2 * pages + pages / 64 + (kImageSlotSize >> kPageShift) + (16 * kMiB >> kPageShift));
  v.shared_backing = backing_page_size(c.st.backing).value_or(kPageSize) > kPageSize ? PgLevel::k2M : PgLevel::k4K;
  return v;
}

std::string pmc_refusal(const WorkloadConfig& c) {
  if (!backing_page_size(c.st.backing))
    return fmt::format("-s {}: not a backing source the model has (anonymous, shmem, anonymous_thp, anonymous_hugetlb, "
                       "anonymous_hugetlb_2mb, shared_hugetlb)",
                       c.st.backing);
  const uint64_t memfd = per_cpu_size(c) * uint64_t(c.vcpus);
  if (c.st.slots < 1 || memfd % uint64_t(c.st.slots) || (memfd / uint64_t(c.st.slots)) % kPageSize)
    return fmt::format("-m {}: the memfd size ({:#x}) needs to be cleanly divisible by the number of memslots ({})",
                       c.st.slots, memfd, c.st.slots);
  return "";
}

double pmc_gib(const WorkloadConfig& c) { return double(per_cpu_size(c) * uint64_t(c.vcpus)) / double(1ull << 30); }

// One vCPU's side of the test: its accesses and the VMM work its exits ask for.
class Guest {
 public:
  Guest(Vm& vm, int vcpu, uint64_t base) : vm_(vm), v_(vcpu), base_(base), shared_(vm.shared_gpa_bit()) {}

  // guest_test_explicit_conversion(): convert each sub-range in and out.
  int explicit_conversions(bool fallocate) {
    if (int r = access(0, kDataSize, false, true)) return r;  // memset 0xaa, shared
    if (int r = access(0, kDataSize, false, false)) return r;  // check 0xcc after the host's write
    for (const SubRange& s : kRanges) {
      if (int r = access(s.offset, s.size, false, true)) return r;
      if (int r = map(s.offset, s.size, true, fallocate)) return r;
      if (s.size > kPageSize) {
        if (int r = access(s.offset, kPageSize, true, true)) return r;
      } else {
        if (int r = access(s.offset, s.size, true, true)) return r;
        if (int r = access(s.offset, s.size, true, false)) return r;
        // The rest of the area is still shared.
        if (int r = access_except(s.offset, s.size)) return r;
        for (uint64_t j = 0; j < s.size / kPageSize; j++) {
          const uint64_t off = s.offset + j * kPageSize;
          if (((off >> kPageShift) & 1) == 0) continue;
          if (int r = map(off, kPageSize, false, fallocate)) return r;
          if (int r = access(off, kPageSize, false, true)) return r;
        }
        if (s.size == kPageSize && ((s.offset >> kPageShift) & 1)) continue;
      }
      if (int r = map(s.offset, s.size, false, fallocate)) return r;
      if (int r = access(s.offset, s.size, false, true)) return r;
      if (int r = access(s.offset, s.size, false, false)) return r;
      if (int r = map(0, kDataSize, false, true)) return r;
    }
    return 0;
  }

  // guest_punch_hole(): private memory stays private while holes are
  // punched under it; a later access faults a fresh page in.
  int punch_holes(bool precise) {
    if (int r = map(0, kDataSize, true, false)) return r;
    for (const SubRange& s : kRanges) {
      if (int r = punch(0, kDataSize)) return r;
      if (int r = precise ? access(s.offset, s.size, true, true) : access(0, kDataSize, true, true)) return r;
      if (int r = punch(s.offset, s.size)) return r;
      if (int r = access(s.offset, s.size, true, false)) return r;
    }
    return map(0, kDataSize, false, true);
  }

  uint64_t conversions = 0, holes = 0;

 private:
  int access(uint64_t off, uint64_t size, bool priv, bool write) {
    const uint64_t gpa = base_ + off;
    return touch_pages(vm_, v_, priv ? gpa : gpa | shared_, size / kPageSize, write);
  }
  int access_except(uint64_t off, uint64_t size) {
    if (int r = access(0, off, false, false)) return r;
    return access(off + size, kDataSize - off - size, false, false);
  }
  // KVM_HC_MAP_GPA_RANGE: the vCPU exits to userspace, which punches the
  // hole (going shared, with fallocate) and sets the attributes.
  int map(uint64_t off, uint64_t size, bool priv, bool fallocate) {
    vm_.vcpu_exit(v_);
    conversions++;
    if (int r = vm_.set_memory_attributes(base_ + off, size, priv)) return r;
    if (fallocate && !priv) return punch(off, size);
    return 0;
  }
  int punch(uint64_t off, uint64_t size) {
    vm_.vcpu_exit(v_);
    holes++;
    return vm_.punch_hole(base_ + off, size);
  }

  Vm& vm_;
  int v_;
  uint64_t base_, shared_;
};

bool pmc_run(Driver& d, const WorkloadConfig& c, std::mt19937_64&) {
  Vm& vm = d.vm();
  const uint64_t area = per_cpu_size(c), memfd = area * uint64_t(c.vcpus);
  const uint64_t slot_size = memfd / uint64_t(c.st.slots);
  d.print(fmt::format("Random seed: {:#x}", static_cast<uint32_t>(c.seed)));
  d.op("create TD", [&] { return vm.create(); });
  d.op("add memslot 0: the guest image (guest_memfd)", [&] { return vm.add_memslot(0, 0, kImageSlotSize, kMemGuestMemfd); });
  for (int s = 0; s < c.st.slots; s++)
    d.op(fmt::format("add memslot {}: {} KiB at {:#x} (guest_memfd)", kFirstSlot + s, slot_size >> 10,
                     kBase + uint64_t(s) * slot_size),
         [&] { return vm.add_memslot(kFirstSlot + s, kBase + uint64_t(s) * slot_size, slot_size, kMemGuestMemfd); });
  d.op(fmt::format("KVM_TDX_INIT_MEM_REGION {} pages (TDH.MEM.PAGE.ADD)", kImagePages),
       [&] { return vm.init_mem_region(0, kImagePages); });
  d.op("KVM_TDX_FINALIZE_VM", [&] { return vm.finalize(); });
  if (d.failed()) return false;
  std::vector<Guest> guests;
  for (int v = 0; v < c.vcpus; v++) guests.emplace_back(vm, v, kBase + uint64_t(v) * area);
  const auto t0 = std::chrono::steady_clock::now();
  struct Phase {
    const char* name;
    int (Guest::*fn)(bool);
    bool arg;
  };
  const Phase phases[] = {{"explicit conversions", &Guest::explicit_conversions, false},
                          {"explicit conversions with fallocate", &Guest::explicit_conversions, true},
                          {"holes punched in private memory", &Guest::punch_holes, false},
                          {"holes punched in private memory, precisely", &Guest::punch_holes, true}};
  Chart& chart = d.chart("private-mem-conversions", "private_mem_conversions_test: each phase", "phase (1-2 "
                         "explicit, without and with fallocate; 3-4 holes punched, loosely and precisely)",
                         "seconds", true);
  for (size_t i = 0; i < std::size(phases); i++) {
    const Phase& p = phases[i];
    const auto start = std::chrono::steady_clock::now();
    d.parallel(fmt::format("vCPUs: {}", p.name), c.vcpus,
               [&](int v) { return (guests[size_t(v)].*p.fn)(p.arg); });
    if (d.failed()) return false;
    chart.add("all vCPUs", double(i + 1), std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  uint64_t conversions = 0, holes = 0;
  for (const Guest& g : guests) conversions += g.conversions, holes += g.holes;
  d.print(fmt::format("{} vCPUs: {} conversions (KVM_SET_MEMORY_ATTRIBUTES), {} holes punched in {}", c.vcpus,
                      conversions, holes, selftest_time(seconds)));
  return true;
}

}  // namespace

const WorkloadInfo& private_mem_conversions_workload() {
  static const WorkloadInfo w{"private-mem-conversions",
                              "private_mem_conversions_test: each vCPU converts (0,4K) (0,2M) (4K,4K) (4K,2M) (2M,4K) "
                              "of its 2M+4K area shared<->private, with and without fallocate, then punches holes; "
                              "-n vCPUs, -m memslots, -s backing",
                              &pmc_vm, &pmc_run, &pmc_refusal, &pmc_gib};
  return w;
}

}  // namespace mirrormmu
