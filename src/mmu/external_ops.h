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

enum class HookKind : uint8_t {
  LinkExternalSpt,
  SetExternalSpte,
  RemoveExternalSpte,
  FreeExternalSpt,
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
};

}  // namespace mirrormmu
