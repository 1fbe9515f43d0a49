// SPDX-License-Identifier: MIT
#include "explore/drive.h"

#include <fmt/format.h>

#include <cstring>
#include <memory>

#include "check/checker.h"
#include "mmu/tdp_mmu.h"
#include "sync/rcu.h"
#include "vm/vm.h"

namespace mirrormmu {

// The MMU's private steps a driven row needs, and nothing else.
struct TransitionDriveAccess {
  static MmuPage* alloc_table(TdpMmu& m, const TdpIter& iter) {
    MmuPage* sp = m.tdp_mmu_alloc_sp_for_split(iter.is_mirror());
    if (sp) m.tdp_mmu_init_child_sp(sp, iter);
    return sp;
  }
  static int link(TdpMmu& m, TdpIter& iter, MmuPage* sp, bool shared) { return m.tdp_mmu_link_sp(iter, sp, shared); }
  static int split(TdpMmu& m, TdpIter& iter, MmuPage* sp, bool shared) {
    return m.tdp_mmu_split_huge_page(iter, sp, shared);
  }
  static void free_unlinked(TdpMmu& m, MmuPage* sp) { m.tdp_mmu_free_sp(sp, false); }
};

namespace explore {

namespace {

using spte::Kind;

constexpr uint64_t kSlotBytes = 8ull << 20;
constexpr uint64_t kTarget = 2ull << 20;  // the driven entry maps this GPA

std::string kind_str(Kind k) { return spte::kind_name(k); }

struct Setup {
  std::unique_ptr<Vm> vm;
  std::unique_ptr<Checker> ck;
  std::string error;
};

// A TD with one guest_memfd slot, its memory private for a mirror row, and
// the entry for kTarget at `level` brought to `old_kind` by a guest access.
Setup set_up(const std::string& design, Kind old_kind, bool mirror, PgLevel level, bool huge) {
  Setup s;
  VmConfig vc;
  vc.type = VmType::Td;
  vc.pool_pages = 1u << 14;
  vc.nr_vcpus = 1;
  vc.huge_pages = huge && mirror;
  // The shared side maps what backs it: 4K pages give the direct root 4K
  // tables, a 2M page a huge leaf.
  vc.shared_backing = huge ? PgLevel::k2M : PgLevel::k4K;
  std::string err;
  parse_design_spec(design, &vc.design, &vc.what_if, &err);
  // A design without private huge pages can still be handed a huge leaf
  // over a table built at 4K (guest_memfd hands out 2M folios anyway).
  if (vc.huge_pages && old_kind != Kind::Leaf && !vm_config_refusal(vc).empty()) vc.huge_pages = huge = false;
  if (std::string why = vm_config_refusal(vc); !why.empty()) {
    s.error = why;
    return s;
  }
  s.vm = std::make_unique<Vm>(vc);
  s.ck = std::make_unique<Checker>(*s.vm);
  Vm& vm = *s.vm;
  if (int rc = vm.create()) s.error = fmt::format("create returned {}", rc);
  else if (int rc = vm.add_memslot(0, 0, kSlotBytes, kMemGuestMemfd)) s.error = fmt::format("add_memslot returned {}", rc);
  else if (int rc = vm.finalize()) s.error = fmt::format("finalize returned {}", rc);
  else if (mirror && (rc = vm.set_memory_attributes(0, kSlotBytes, true)))
    s.error = fmt::format("set_memory_attributes returned {}", rc);
  if (!s.error.empty()) return s;
  const uint64_t alias = mirror ? 0 : vm.shared_gpa_bit();
  // A leaf is the target itself; anything else is a neighbour's access
  // that builds the tables down to the entry and leaves it empty.
  uint64_t gpa = kTarget;
  PgLevel accept = level;
  // A table over memory that could be mapped huge (the row asks for a huge
  // leaf next): map it huge, then split it the way KVM does.
  const bool split_after = old_kind == Kind::NonLeaf && huge;
  if (old_kind != Kind::Leaf && !split_after) {
    gpa = level == PgLevel::k4K || old_kind == Kind::NonLeaf ? kTarget + kPageSize : kTarget + (2ull << 20);
    accept = PgLevel::k4K;
  }
  const ExitReason e = vm.vcpu_access(0, gpa | alias, true, accept);
  vm.vcpu_exit(0);
  if (e != ExitReason::None) {
    s.error = fmt::format("the access at {:#x} exited with {}", gpa, exit_reason_name(e));
    return s;
  }
  if (split_after && mirror) {
    // Converting one 4K page splits the private 2M leaf around it.
    if (int rc = vm.set_memory_attributes(kTarget + kPageSize, kPageSize, false))
      s.error = fmt::format("the split by conversion returned {}", rc);
  } else if (split_after) {
    TdpMmu& mmu = vm.mmu();
    const Gfn g = Gfn::from_gpa(kTarget);
    mmu.mmu_lock().write_lock();
    const int rc = mmu.kvm_tdp_mmu_try_split_huge_pages(g, g + pages_per_hpage(PgLevel::k2M), PgLevel::k4K, false);
    mmu.mmu_lock().write_unlock();
    if (rc) s.error = fmt::format("the split returned {}", rc);
  }
  return s;
}

}  // namespace

DriveOutcome drive_transition(const std::string& design, Kind old_kind, Kind new_kind, bool shared, bool mirror) {
  DriveOutcome out;
  sync::RcuThread rcu_thread;
  const PgLevel level = old_kind == Kind::NonLeaf || new_kind == Kind::NonLeaf ? PgLevel::k2M : PgLevel::k4K;
  const bool huge = level == PgLevel::k2M && (old_kind == Kind::Leaf || new_kind == Kind::Leaf);
  Setup s = set_up(design, old_kind, mirror, level, huge);
  if (!s.error.empty()) {
    out.outcome = "cannot be set up: " + s.error;
    if (s.vm) s.vm->destroy();
    return out;
  }
  Vm& vm = *s.vm;
  TdpMmu& mmu = vm.mmu();
  const Gfn gfn = Gfn::from_gpa(kTarget);
  std::array<uint64_t, kSiteCount> before{};
  for (size_t i = 0; i < kSiteCount; i++) before[i] = vm.bugs().hits(static_cast<Site>(i));
  const bool bugged_before = vm.bugs().bugged();

  auto& lock = mmu.mmu_lock();
  if (shared) lock.read_lock(); else lock.write_lock();
  sync::rcu_read_lock();
  auto roots = mmu.roots_snapshot(mirror ? kMirrorRoots : kDirectRoots);
  int ret = 0;
  std::string why_not;
  if (roots.empty()) {
    why_not = "no root";
  } else {
    MmuPage* root = roots.front();
    TdpIter iter(mmu.pool(), root, level, gfn, mmu.kvm_gfn_root_bits(root));
    const uint64_t mmio_value = mmu.config().mmio_value;
    std::string deepest;
    while (iter.valid && !(iter.level == level && iter.gfn == gfn)) {
      if (gfn.v - iter.gfn.v < pages_per_hpage(iter.level))
        deepest = fmt::format(" (at {}: {})", level_name(iter.level),
                              kind_str(spte::kind_of(iter.old_spte, iter.level, mmio_value)));
      iter.next();
    }
    Kind at = iter.valid ? spte::kind_of(iter.old_spte, level, mmio_value) : Kind::NonPresent;
    if (iter.valid && old_kind == Kind::Mmio && at == Kind::NonPresent) {
      // Nothing but an emulated-MMIO fault writes one, and a TD's private
      // side never takes one: the value is put in place as that fault would.
      iter.old_spte = spte::make_mmio(gfn, mmio_value, 0);
      sync::write_spte(iter.sptep, iter.old_spte);
      at = Kind::Mmio;
    }
    if (!iter.valid) {
      why_not = fmt::format("no {} entry for gfn {:#x}{}", level_name(level), gfn.v, deepest);
    } else if (at != old_kind) {
      why_not = fmt::format("the entry is {}, not {}", kind_str(at), kind_str(old_kind));
    } else if (new_kind == Kind::NonLeaf) {
      MmuPage* sp = TransitionDriveAccess::alloc_table(mmu, iter);
      if (!sp) {
        why_not = "no table could be allocated";
      } else {
        ret = old_kind == Kind::Leaf ? TransitionDriveAccess::split(mmu, iter, sp, shared)
                                     : TransitionDriveAccess::link(mmu, iter, sp, shared);
        if (ret) TransitionDriveAccess::free_unlinked(mmu, sp);
      }
    } else {
      uint64_t v = spte::kNonPresent;
      if (new_kind == Kind::Mmio) v = spte::make_mmio(gfn, mmio_value, 0);
      if (new_kind == Kind::Leaf && old_kind == Kind::Leaf) v = iter.old_spte ^ spte::kWritable;
      if (new_kind == Kind::Leaf && old_kind != Kind::Leaf) {
        const Memslot* slot = vm.find_slot(gfn);
        Backing* b = mirror ? slot->gmem.get() : slot->shared.get();
        PgLevel max = PgLevel::k4K;
        const Pfn pfn = b ? b->get_pfn(gfn.v - slot->base_gfn.v, &max) : kInvalidPfn;
        if (!pfn.valid() || lvl(max) < lvl(level) || pfn.v % pages_per_hpage(level))
          why_not = fmt::format("no {} backing page for gfn {:#x}", level_name(level), gfn.v);
        v = spte::make_leaf(pfn, level);
      }
      // Two non-present values: the only ones KVM writes are MMIO and
      // FROZEN_SPTE, and only the removal of a table under the shared lock
      // freezes a non-present child; no setter may be handed FROZEN_SPTE.
      if (why_not.empty() && v == iter.old_spte)
        why_not = "the old and new values are the same (a non-present change comes only from freezing the children "
                  "of a table removed under the shared lock)";
      if (why_not.empty()) {
        if (shared) ret = mmu.tdp_mmu_set_spte_atomic(iter, v);
        else mmu.tdp_mmu_iter_set_spte(iter, v);
      }
    }
  }
  sync::rcu_read_unlock();
  if (shared) lock.read_unlock(); else lock.write_unlock();
  for (MmuPage* r : roots) mmu.kvm_tdp_mmu_put_root(r);

  for (size_t i = 0; i < kSiteCount; i++)
    if (vm.bugs().hits(static_cast<Site>(i)) != before[i]) out.sites.push_back(static_cast<Site>(i));
  if (!why_not.empty()) out.outcome = "cannot be set up: " + why_not;
  else if (ret) out.outcome = "refused " + errno_str(ret);
  else out.outcome = !bugged_before && vm.bugs().bugged() ? "accepted, VM bugged" : "accepted";

  // What the change left behind, and whether teardown copes with it.
  s.ck->check("the driven change");
  for (const auto& v : s.ck->violations())
    if (v.invariant != "bug_site") out.violations.push_back(v.invariant + ": " + v.detail);
  const size_t seen = s.ck->violations().size();
  vm.destroy();
  s.ck->check_end_of_life();
  for (size_t i = seen; i < s.ck->violations().size(); i++)
    out.violations.push_back("teardown: " + s.ck->violations()[i].invariant + ": " + s.ck->violations()[i].detail);
  return out;
}

}  // namespace explore
}  // namespace mirrormmu
