// SPDX-License-Identifier: MIT
// The kvm_x86_ops hooks through which the TDP MMU propagates mirror changes
// to the external (S-EPT) page table. TDX implements them (tdx/tdx_ops.h);
// tests implement them with fakes.
//
// Return values follow the kernel: 0 on success, -EBUSY when the external
// side is contended and the caller should retry, -EIO when the VM is bugged.
#pragma once

#include <cerrno>
#include <cstdint>

#include "base/types.h"

namespace mirrormmu {

struct MmuPage;

enum class HookKind : uint8_t {
  LinkExternalSpt,
  SetExternalSpte,
  RemoveExternalSpte,
  FreeExternalSpt,
  SplitExternalSpt,
  ReclaimExternalSpt,
  kCount
};
inline constexpr size_t kHookKindCount = static_cast<size_t>(HookKind::kCount);
const char* hook_kind_name(HookKind k);

// Which tdx.c goes with a hook layout. The postings change both sides at
// once; the TDX glue keeps each side's dispatcher and checks.
enum class ExternalLayout : uint8_t {
  FourHooks,     // [B] link/set/remove/free, and [HP]'s split hook beside them
  CentralizedRfc,  // RFC v5 (Jan 2026): set(old, new) with splits, void reclaim hook
  Merged,        // kvm.git June 2026: set_external_spte + free_external_spt
  MergedReclaimViaSet,  // Merged, the S-EPT page reclaimed through the set hook (seed 000 option 2)
  MergedHuge,    // Merged plus the RFC v5 huge-page patches (split as present->present)
};

class ExternalOps {
 public:
  virtual ~ExternalOps() = default;
  virtual void select_layout(ExternalLayout l) {}
  // SEPT.ADD: link a new S-EPT page under the entry at (gfn, level).
  virtual int link_external_spt(Gfn gfn, PgLevel level, Pfn external_spt) = 0;
  // Map a leaf: PAGE.AUG while the TD runs, PAGE.ADD while it is being built.
  virtual int set_external_spte(Gfn gfn, PgLevel level, uint64_t mirror_spte) = 0;
  // Remove a leaf: BLOCK, TRACK + kick, REMOVE, WBINVD. Void since v6.19:
  // failure bugs the VM inside the hook.
  virtual void remove_external_spte(Gfn gfn, PgLevel level, uint64_t mirror_spte) = 0;
  // Reclaim an S-EPT page; only legal after the HKID is released.
  virtual int free_external_spt(Gfn gfn, PgLevel level, Pfn external_spt) = 0;

  // ---- the merged layer ([U], kvm.git June 2026) ----------------------------
  // set_external_spte(gfn, old, new, level) below, plus this: void, RECLAIM
  // and free the S-EPT page at once, sp.external_spt invalid either way (a
  // failed reclaim leaks it and sets sp.external_leaked).
  virtual void free_external_spt(MmuPage& sp) {}

  // ---- hooks of the designs argued about on the list ----------------------
  // The hooks below default to "not implemented" so that a backend written
  // for the four upstream hooks (the test fakes) still links; a design that
  // needs one the backend lacks fails loudly (-EOPNOTSUPP bugs the VM).

  // [HP] split_external_spt: demote the huge leaf at (gfn, level) into the
  // new S-EPT page, under the exclusive lock.
  virtual int split_external_spt(Gfn gfn, PgLevel level, uint64_t old_spte, Pfn new_external_spt) {
    return -EOPNOTSUPP;
  }
  // [P1]/[P2] the one set hook: every change of a present mirror SPTE (and
  // every new present one) as (old, new); the backend dispatches on the
  // transition (split, remove, link, map; for the single-hook design also
  // the reclaim of a removed table's S-EPT page).
  virtual int set_external_spte(Gfn gfn, uint64_t old_spte, uint64_t new_spte, PgLevel level) {
    return -EOPNOTSUPP;
  }
  // [P1] reclaim_external_spt: void, the backend itself marks the page
  // leaked (sp.external_spt invalid) when it cannot take it back.
  virtual void reclaim_external_spt(Gfn gfn, MmuPage& sp) { (void)gfn, (void)sp; }

  // ---- who owns external_spt ---------------------------------------------
  // The TDX-side pool policy of the NAK'd "[PATCH v4 11/16] KVM: TDX: Add x86
  // ops for external spt cache" (Rick Edgecombe, 2025-11-20): pages are
  // pre-allocated by the backend outside mmu_lock (per vCPU, vcpu < 0 for
  // the per-VM split path) and handed out under it. Ownership passes to the
  // MMU at hand-out: it frees them with the sp either way.
  virtual int topup_external_fault_cache(int vcpu, int min) { return -EOPNOTSUPP; }
  virtual Pfn alloc_external_fault_cache(int vcpu) { return kInvalidPfn; }

  // ---- memory the hooks themselves need --------------------------------------
  // [DPAMT v6] topup_external_cache(vcpu, min_nr_spts), a RET0 hook called
  // from mmu_topup_memory_caches(): the mapping hooks may have to lend the
  // TDX module a PAMT page pair per new 4K page and they run under mmu_lock,
  // where nothing may be allocated. vcpu < 0 fills the VM's own cache (split
  // allocation outside any vCPU). 0 or -ENOMEM.
  virtual int topup_external_cache(int vcpu, int min_nr_spts) { return 0; }
};

}  // namespace mirrormmu
