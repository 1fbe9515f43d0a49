// SPDX-License-Identifier: MIT
#include "vm/direct_mmu.h"

#include <fmt/format.h>

#include "sync/sched.h"

namespace mirrormmu {

HwAccess DirectMmu::guest_access(int vcpu, uint64_t gfn, bool write) {
  // A reload that fails leaves the vCPU without a root; the walk then finds
  // nothing and the fault path reports the error as it would.
  while (!hw().enter(vcpu))
    if (reload_root(vcpu) < 0) break;
  sync::sched_point(sync::PointKind::GuestAccess, &hw());
  HwAccess a = HwAccess::TlbHit;
  if (!hw().tlb_hit(vcpu, gfn, write)) {
    const HwWalk w = walk(vcpu, gfn);
    hw().fill(vcpu, gfn, w);
    a = w.leaf && (!write || w.writable) ? HwAccess::Walked : HwAccess::EptViolation;
  }
  hw().exit(vcpu);
  return a;
}

std::string DirectMmu::check_translations(uint64_t start, uint64_t end, const char* after) {
  for (const GuestHw::Cached& c : hw().translations(start, end)) {
    const HwWalk w = walk(c.vcpu, c.gfn);
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
