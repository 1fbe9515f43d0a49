// SPDX-License-Identifier: MIT
// Private huge pages of a TD: how large a private fault may map, and the
// callers that demote a 2M private mapping under the exclusive lock — the
// guest accepting at 4K inside it, and a conversion or hole punch that cuts
// it.
#include <cerrno>

#include "sync/rcu.h"
#include "vm/vm.h"

namespace mirrormmu {

// kvm_mmu_max_mapping_level() for a private gfn of a TD: 2M only while the TD
// runs ([P1] patch 45: always 4K while it is being built, when PAGE.ADD
// measures 4K pages), when guest_memfd backs the block with a 2M folio, the
// whole block is private and inside the slot at the same alignment, the
// guest never accepted at 4K in it, and the exit was not a 4K accept.
PgLevel Vm::private_max_level(const Memslot& s, Gfn gfn, PgLevel backing, PgLevel accept_level) const {
  if (!cfg_.huge_pages || tdx_->td_state() != tdx::TdState::Runnable) return PgLevel::k4K;
  // enable_tdx_huge_page is turned off on a module whose DEMOTE can be
  // interrupted: TDX_INTERRUPTED_RESTARTABLE has no bound on its retries.
  if (!module_->config().enhanced_demote_interruptibility) return PgLevel::k4K;
  if (backing < PgLevel::k2M || accept_level < PgLevel::k2M) return PgLevel::k4K;
  // Userspace and guest frames must share the 2M alignment (lpage_info).
  if ((s.base_gfn.v & (pages_per_hpage(PgLevel::k2M) - 1)) != 0) return PgLevel::k4K;
  if (s.huge_inhibited(gfn) || !s.hugepage_uniform(gfn, PgLevel::k2M)) return PgLevel::k4K;
  // The fault is private, so uniform means all private.
  return PgLevel::k2M;
}

int Vm::handle_mismatched_accept(Vcpu& v, Gfn gfn, PgLevel level) {
  Memslot* s = slot_for(gfn);
  if (!s) return -EFAULT;
  v.accept_mismatches.inc();
  sync::WriteGuard lock(mmu_->mmu_lock());
  // Inhibit first: a fault racing with the split must not map the block
  // huge again once the lock is dropped (the flag is never cleared).
  s->inhibit_huge(gfn);
  const Gfn start = gfn_round_for_level(gfn, level);
  return mmu_->kvm_tdp_mmu_mirrors_split_huge_pages(start, start + pages_per_hpage(level), level);
}

int Vm::split_private_boundaries(Gfn start, Gfn end) {
  if (!is_td() || !cfg_.huge_pages) return 0;
  constexpr uint64_t k2MPages = pages_per_hpage(PgLevel::k2M);
  // Only a leaf that contains a boundary gfn and the gfn before it is cut.
  if (start.v & (k2MPages - 1))
    if (int r = mmu_->kvm_tdp_mmu_mirrors_split_huge_pages(start, start + 1, PgLevel::k4K)) return r;
  if (end.v & (k2MPages - 1))
    if (int r = mmu_->kvm_tdp_mmu_mirrors_split_huge_pages(end - 1, end, PgLevel::k4K)) return r;
  return 0;
}

}  // namespace mirrormmu
