// SPDX-License-Identifier: MIT
// struct kvm_mmu_page, the parts the TDP MMU uses.
#pragma once

#include <atomic>
#include <cstdint>

#include "base/types.h"
#include "sync/rcu.h"

namespace mirrormmu {

struct MmuRole {
  PgLevel level = PgLevel::k4K;
  bool is_mirror = false;
  bool invalid = false;
  // The role "word" used to match roots: invalid is not part of it.
  bool same_kind(const MmuRole& o) const { return level == o.level && is_mirror == o.is_mirror; }
};

struct MmuPage {
  // First member so the RCU callback can get back to the page.
  sync::RcuHead rcu_head{};
  uint64_t* spt = nullptr;        // the KVM-visible table (mirror or direct)
  Pfn spt_pfn = kInvalidPfn;
  // The S-EPT page (mirror non-root sps only). KVM donates it but never
  // reads or writes it; it stays invalid for the mirror root, which the TDX
  // module owns as part of the TDCS.
  Pfn external_spt = kInvalidPfn;
  uint64_t* ptep = nullptr;       // parent SPTE linking this table; null for a root
  MmuPage* parent = nullptr;      // the table holding *ptep (sptep_to_sp(ptep))
  Gfn gfn{};                      // base gfn, without root gfn bits
  MmuRole role{};
  std::atomic<int> tdp_mmu_root_count{0};
  bool tdp_mmu_scheduled_root_to_zap = false;
  // Created because an exec fault could not map huge (NX huge pages); on
  // possible_nx_huge_pages while nx_tracked, for the recovery worker.
  // Read by faults under the shared lock while unlinking clears it: atomic
  // where the kernel's plain bool races benignly.
  std::atomic<bool> nx_huge_page_disallowed{false};
  bool nx_tracked = false;  // under the TDP MMU's pages lock
  // Was reachable from a root at some point: it may only be freed after an
  // RCU grace period from then on.
  bool linked = false;
  // The TDX module holds external_spt (SEPT.ADD or DEMOTE took it, no
  // reclaim yet): the host must not free it, whatever path frees the sp.
  bool external_linked = false;
  // The S-EPT page could not be taken back (RECLAIM failed, or the HKID was
  // still assigned) and was leaked on purpose.
  bool external_leaked = false;
  void* owner = nullptr;          // the TdpMmu, for the RCU callback

  bool is_mirror() const { return role.is_mirror; }
};

}  // namespace mirrormmu
