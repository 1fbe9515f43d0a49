// SPDX-License-Identifier: MIT
#include "workload/memstress.h"

#include <fmt/format.h>

namespace mirrormmu {

Memstress memstress_layout(const WorkloadConfig& c) {
  Memstress m;
  m.vcpus = c.vcpus;
  m.overlap = c.st.overlap;
  m.page = backing_page_size(c.st.backing).value_or(kPageSize);
  m.size = uint64_t(c.vcpus) * c.st.bytes_per_vcpu;
  // The TD's private GPA space ends at the shared bit (47, or 51 with
  // 5-level EPT); memstress puts the memory one guest page below its end.
  const uint64_t end_gfn = 1ull << ((c.ept_levels == 5 ? 51 : 47) - kPageShift);
  const uint64_t gpa = (end_gfn - m.size / kPageSize - 1) * kPageSize;
  m.gpa = gpa & ~(m.page - 1);
  return m;
}

std::optional<uint64_t> backing_page_size(const std::string& name) {
  if (name == "anonymous" || name == "shmem") return kPageSize;
  if (name == "anonymous_thp" || name == "anonymous_hugetlb" || name == "anonymous_hugetlb_2mb" ||
      name == "shared_hugetlb")
    return 2ull << 20;
  return std::nullopt;
}

std::string backing_refusal(const WorkloadConfig& c) {
  const auto page = backing_page_size(c.st.backing);
  if (!page)
    return fmt::format("-s {}: not a backing source TDX can map privately (anonymous, shmem: 4K; anonymous_thp, "
                       "anonymous_hugetlb, anonymous_hugetlb_2mb, shared_hugetlb: 2M)",
                       c.st.backing);
  if (*page > kPageSize && !c.huge_pages)
    return fmt::format("-s {}: a 2M backing needs --huge-pages (and a design that maps private memory huge)",
                       c.st.backing);
  return "";
}

std::string memstress_refusal(const WorkloadConfig& c) {
  if (std::string why = backing_refusal(c); !why.empty()) return why;
  const auto page = backing_page_size(c.st.backing);
  if (c.st.bytes_per_vcpu == 0 || c.st.bytes_per_vcpu % *page)
    return fmt::format("-b {}: guest memory size is not a multiple of the {} KiB backing page", c.st.bytes_per_vcpu,
                       *page >> 10);
  const uint64_t total = uint64_t(c.vcpus) * c.st.bytes_per_vcpu;
  if (total / uint64_t(c.vcpus) != c.st.bytes_per_vcpu || total > (1ull << 40))
    return fmt::format("-b {} x -v {}: more guest memory than the model takes (1 TiB)", c.st.bytes_per_vcpu, c.vcpus);
  return "";
}

double memstress_gib(const WorkloadConfig& c) {
  return double(uint64_t(c.vcpus) * c.st.bytes_per_vcpu) / double(1ull << 30);
}

VmConfig memstress_vm_config(const WorkloadConfig& c, uint64_t extra_pages) {
  const uint64_t pages = uint64_t(c.vcpus) * c.st.bytes_per_vcpu / kPageSize;
  // Guest pages, their page tables and S-EPT pages (1/256 is plenty for
  // 4K tables of both trees), slot 0 and PAMT pairs.
  return td_vm_config(c, pages + pages / 128 + (kImageSlotSize >> kPageShift) + extra_pages + (16ull << 20 >> kPageShift));
}

std::string selftest_time(double seconds) {
  const auto ns = static_cast<int64_t>(seconds * 1e9);
  return fmt::format("{}.{:09}s", ns / 1000000000, ns % 1000000000);
}

void print_memstress_header(Driver& d, const Memstress& m, int ept_levels) {
  d.print(fmt::format("Testing guest mode: PA-bits:ANY, VA-bits:{},  4K pages", ept_levels == 5 ? 57 : 48));
  d.print(fmt::format("guest physical test memory: [{:#x}, {:#x})", m.gpa, m.gpa + m.size));
}

}  // namespace mirrormmu
