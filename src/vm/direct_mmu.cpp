// SPDX-License-Identifier: MIT
#include "vm/direct_mmu.h"

#include <fmt/format.h>

#include "sync/sched.h"

namespace mirrormmu {

HwAccess DirectMmu::guest_access(int vcpu, uint64_t gfn, bool write, bool exec) {
  // A reload that fails leaves the vCPU without a root; the walk then finds
  // nothing and the fault path reports the error as it would.
  while (!hw().enter(vcpu))
    if (reload_root(vcpu) < 0) break;
  sync::sched_point(sync::PointKind::GuestAccess, &hw());
  HwAccess a = HwAccess::TlbHit;
  if (!hw().tlb_hit(vcpu, gfn, write, exec)) {
    const HwWalk w = walk(vcpu, gfn, write ? WalkFor::Write : WalkFor::Read);
    hw().fill(vcpu, gfn, w);
    a = w.leaf && (!write || w.writable) && (!exec || w.executable) ? HwAccess::Walked : HwAccess::EptViolation;
  }
  hw().exit(vcpu);
  return a;
}

void DirectMmu::host_migrate(uint64_t gfn, uint64_t npages, uint64_t new_pfn) {
  invalidate_range_start(gfn, gfn + npages);
  std::vector<uint64_t> old(npages);
  for (uint64_t i = 0; i < npages; i++) {
    old[i] = host().pfn(gfn + i);
    host().remap(gfn + i, new_pfn + i);
  }
  invalidate_range_end(gfn, gfn + npages);
  for (uint64_t i = 0; i < npages; i++)
    hw().host_freed(old[i], old[i] + 1, fmt::format("the migration of gfn {:#x} to pfn {:#x}", gfn + i, new_pfn + i));
}

std::string DirectMmu::check_translations(uint64_t start, uint64_t end, const char* after) {
  for (const GuestHw::Cached& c : hw().translations(start, end)) {
    const HwWalk w = walk(c.vcpu, c.gfn, WalkFor::Inspect);
    std::string tables;
    if (!w.leaf)
      tables = "map nothing";
    else if (w.pfn != c.pfn)
      tables = fmt::format("map pfn {:#x}", w.pfn);
    else if (c.writable && !w.writable)
      tables = "are write-protected";
    else
      continue;
    std::string err = fmt::format("tlb_stale: vCPU {} still translates gfn {:#x} to pfn {:#x}{} after {} returned; the "
                                  "tables {}",
                                  c.vcpu, c.gfn, c.pfn, c.writable ? " (writable)" : "", after, tables);
    hw().report(err);
    return err;
  }
  return "";
}

}  // namespace mirrormmu
