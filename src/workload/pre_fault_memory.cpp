// SPDX-License-Identifier: MIT
// pre_fault_memory_test on a TD: KVM_PRE_FAULT_MEMORY over a 2M+4K memslot
// near the top of the GPA space, first as shared memory, then as private
// memory (guest_memfd, made private), the TDX counterparts of the test's
// vm_type 0 and SW_PROTECTED passes. The cases prefault a range that ends
// inside the slot (all of it done), one that runs one page past its end
// (that page left, -ENOENT) and one wholly past it; each twice: once alone,
// where every page reported done must then be mapped (the selftest's guest
// would only fault a skipped page in, unseen), and once while another
// thread deletes and recreates the slot under the prefault, with the test's
// retries. The guest then reads every page. -s.
#include <fmt/format.h>

#include "workload/memstress.h"

namespace mirrormmu {

namespace {

constexpr int kSlot = 10;

struct Case {
  uint64_t offset, size, left;
};

struct Layout {
  uint64_t gpa = 0, size = 0, page = kPageSize;
};

Layout layout(const WorkloadConfig& c) {
  Layout l;
  l.page = backing_page_size(c.st.backing).value_or(kPageSize);
  // align_up(2M + a guest page, the backing page), at the top of the
  // private GPA space, aligned to max(2M, backing page).
  l.size = ((2ull << 20) + kPageSize + l.page - 1) & ~(l.page - 1);
  const uint64_t max_gfn = (1ull << ((c.ept_levels == 5 ? 51 : 47) - kPageShift)) - 1;
  const uint64_t align = std::max<uint64_t>(2ull << 20, l.page);
  l.gpa = ((max_gfn - l.size / kPageSize) * kPageSize) & ~(align - 1);
  return l;
}

VmConfig vm_config(const WorkloadConfig& c) {
  // Two passes of a 4M slot at most, recreated with fresh memory, and tables.
  VmConfig v = td_vm_config(c, 4 * (4ull << 20 >> kPageShift) + (kImageSlotSize >> kPageShift) + (16ull << 20 >> kPageShift));
  v.shared_backing = layout(c).page > kPageSize ? PgLevel::k2M : PgLevel::k4K;
  return v;
}

double guest_gib(const WorkloadConfig& c) { return double(layout(c).size) / double(1ull << 30); }

bool run(Driver& d, const WorkloadConfig& c, std::mt19937_64&) {
  Vm& vm = d.vm();
  const Layout l = layout(c);
  d.op("create TD", [&] { return vm.create(); });
  d.op("add memslot 0: the guest image (guest_memfd)", [&] { return vm.add_memslot(0, 0, kImageSlotSize, kMemGuestMemfd); });
  d.op(fmt::format("KVM_TDX_INIT_MEM_REGION {} pages (TDH.MEM.PAGE.ADD)", kImagePages),
       [&] { return vm.init_mem_region(0, kImagePages); });
  d.op("KVM_TDX_FINALIZE_VM", [&] { return vm.finalize(); });
  if (d.failed()) return false;
  // The selftest prints nothing on success: it has no guest modes to loop
  // over and no backing flag. -s is ours, so it is named only when given.
  if (c.st.backing != "anonymous") d.print(fmt::format("Testing memory backing src type: {}", c.st.backing));

  // The selftest's three: [0, 2M) all done; two pages from the slot's last
  // page, one left; one page past the end, all of it left (-ENOENT). With
  // 4K backing, [2M, +8K) and [2M + 4K, +4K), as upstream.
  const Case cases[] = {
      {0, 2ull << 20, 0}, {l.size - kPageSize, 2 * kPageSize, kPageSize}, {l.size, kPageSize, kPageSize}};
  for (const bool priv : {false, true}) {
    const char* kind = priv ? "private" : "shared";
    auto add_slot = [&] {
      if (int r = vm.add_memslot(kSlot, l.gpa, l.size, priv ? kMemGuestMemfd : 0)) return r;
      return priv ? vm.set_memory_attributes(l.gpa, l.size, true) : 0;
    };
    d.op(fmt::format("add memslot {}: {} KiB of {} memory at {:#x}", kSlot, l.size >> 10, kind, l.gpa), add_slot);
    if (d.failed()) return false;
    for (const Case& k : cases) {
      const std::string what = fmt::format("{} [{:#x}, +{:#x})", kind, k.offset, k.size);
      // Alone: the ioctl's own contract, and every page it reports done mapped.
      const std::string alone = "KVM_PRE_FAULT_MEMORY " + what;
      d.op(alone, [&] {
        uint64_t gpa = l.gpa + k.offset, size = k.size;
        int r;
        do r = vm.pre_fault_memory(0, &gpa, &size);
        while (r == 0 && size);
        if (size != k.left) return -EINVAL;
        if ((k.left == 0) != (r == 0) || (k.left && r != -ENOENT)) return r ? r : -EINVAL;
        for (uint64_t a = l.gpa + k.offset; a < gpa; a += kPageSize)
          if (!vm.mapped_level(0, priv ? a : a | vm.shared_gpa_bit()))
            d.report("prefault_unmapped",
                                       fmt::format("gpa {:#x} was reported prefaulted but is not mapped", a));
        return 0;
      });
      // Against the slot's deletion: the first result ends the race, the
      // slot comes back and what is left is prefaulted again.
      uint64_t gpa = l.gpa + k.offset, size = k.size;
      int r = 0;
      d.parallel(
          "KVM_PRE_FAULT_MEMORY " + what + " while the memslot is deleted", 1,
          [&](int) {
            do {
              const uint64_t before = size;
              r = vm.pre_fault_memory(0, &gpa, &size);
              // "expecting range.size to change on success"
              if ((size < before) == (r < 0)) return -EINVAL;
            } while (r == -EINTR);
            return 0;
          },
          [&] { return vm.delete_memslot(kSlot); });
      d.op(fmt::format("recreate memslot {} ({})", kSlot, kind), add_slot);
      d.op("KVM_PRE_FAULT_MEMORY " + what + ", the rest", [&] {
        while (size && (r >= 0 || r == -EINTR || r == -EAGAIN || r == -ENOENT)) {
          const uint64_t before = size;
          r = vm.pre_fault_memory(0, &gpa, &size);
          if ((size < before) == (r < 0)) return -EINVAL;
          if (r < 0 && r != -EINTR) break;
        }
        // "Completed with %llu bytes left, expected %lu"
        if (size != k.left) return -EINVAL;
        return k.left ? (r == -ENOENT ? 0 : -EINVAL) : r;
      });
      if (d.failed()) return false;
    }
    // The guest reads the first word of every page.
    d.op(fmt::format("the guest reads every page ({})", kind), [&] {
      for (uint64_t a = l.gpa; a < l.gpa + l.size; a += kPageSize)
        if (vcpu_access_retrying(vm, 0, priv ? a : a | vm.shared_gpa_bit(), false) != ExitReason::None) return -EFAULT;
      return 0;
    });
    d.op(fmt::format("delete memslot {}", kSlot), [&] { return vm.delete_memslot(kSlot); });
    if (d.failed()) return false;
  }
  return true;
}

}  // namespace

const WorkloadInfo& pre_fault_memory_workload() {
  static const WorkloadInfo w{"pre-fault-memory",
                              "pre_fault_memory_test on a TD: KVM_PRE_FAULT_MEMORY over a 2M+4K slot, shared then "
                              "private, alone and against the slot's deletion; -s",
                              &vm_config, &run, &backing_refusal, &guest_gib};
  return w;
}

}  // namespace mirrormmu
