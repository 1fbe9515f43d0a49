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

class ExternalOps {
 public:
  virtual ~ExternalOps() = default;
  // SEPT.ADD: link a new S-EPT page under the entry at (gfn, level).
  virtual int link_external_spt(Gfn gfn, PgLevel level, Pfn external_spt) = 0;
  // Map a leaf: PAGE.AUG while the TD runs, PAGE.ADD while it is being built.
  virtual int set_external_spte(Gfn gfn, PgLevel level, uint64_t mirror_spte) = 0;
  // Remove a leaf: BLOCK, TRACK + kick, REMOVE, WBINVD. Void since v6.19:
  // failure bugs the VM inside the hook.
  virtual void remove_external_spte(Gfn gfn, PgLevel level, uint64_t mirror_spte) = 0;
  // Reclaim an S-EPT page; only legal after the HKID is released.
  virtual int free_external_spt(Gfn gfn, PgLevel level, Pfn external_spt) = 0;

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
  // The TDX-side pool policy: pages are pre-allocated by the backend outside
  // mmu_lock (per vCPU, vcpu < 0 for the per-VM split path) and handed out
  // under it. Ownership passes to the MMU at hand-out: it frees them with
  // the sp either way.
  virtual int topup_external_cache(int vcpu, int min) { return -EOPNOTSUPP; }
  virtual Pfn alloc_external_spt(int vcpu) { return kInvalidPfn; }

  // ---- memory the hooks themselves need --------------------------------------
  // [P1] DPAMT: the leaf-map, link and split hooks may have to lend the TDX
  // module a PAMT page pair, and they run under mmu_lock where nothing may be
  // allocated. The MMU calls this wherever it tops up its own caches, outside
  // mmu_lock: from the fault path with the vCPU's id, from the split
  // allocation with -1 (the per-VM cache). 0 or -ENOMEM.
  virtual int topup_private_mapping_cache(int vcpu) { return 0; }
};

}  // namespace mirrormmu
