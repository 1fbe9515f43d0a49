// SPDX-License-Identifier: MIT
#include "mmu/design.h"

#include <fmt/format.h>

#include <algorithm>

#include "mmu/designs/designs.h"
#include "mmu/external_ops.h"

namespace mirrormmu {

const char* hook_kind_name(HookKind k) {
  switch (k) {
    case HookKind::LinkExternalSpt: return "link_external_spt";
    case HookKind::SetExternalSpte: return "set_external_spte";
    case HookKind::RemoveExternalSpte: return "remove_external_spte";
    case HookKind::FreeExternalSpt: return "free_external_spt";
    case HookKind::SplitExternalSpt: return "split_external_spt";
    case HookKind::ReclaimExternalSpt: return "reclaim_external_spt";
    case HookKind::kCount: break;
  }
  return "?";
}

static std::vector<DesignInfo>& registry() {
  // The merged layer first: it is the default everywhere.
  static std::vector<DesignInfo> all = {
      {"upstream",
       "merged in kvm.git, June 2026: \"KVM: TDX: Drop kvm_x86_ops.link_external_spt()\" ... \"Move "
       "external page table freeing to TDX code\" (Sean Christopherson, Rick Edgecombe, Yan Zhao; v2 "
       "posted 2026-05-09)",
       "two hooks: set_external_spte(gfn, old, new, level) from __handle_changed_spte for every mirror "
       "change (atomic zaps included), lock and bug checks inside TDX; void free_external_spt(sp) RECLAIMs "
       "and frees the S-EPT page at once",
       &make_upstream_design},
      {"hugepage-v5",
       "upstream + \"[RFC PATCH v5 00/45] TDX: Dynamic PAMT + S-EPT Hugepage\" (Sean Christopherson, "
       "2026-01-28), huge-page patches",
       "2M private leaves; demotion is a present->present set_external_spte (BLOCK, TRACK + kick, DEMOTE "
       "under the write lock); a mirror split under the shared lock is -EOPNOTSUPP",
       &make_hugepage_v5_design},
      {"upstream-rcu",
       "upstream + option 2 of \"Re: [PATCH 07/17] KVM: x86/tdp_mmu: Centralize updates to present "
       "external PTEs\" (Yan Zhao, 2026-04-07)",
       "no free_external_spt: the S-EPT page is reclaimed through set_external_spte after call_rcu, "
       "relying on the RCU read lock held across handle_changed_spte (RCU_LOCKDEP_WARN)",
       &make_upstream_rcu_design},
      {"baseline",
       "v6.19 up to kvm-x86-next-2026.01.23, the base of the January RFC",
       "four hooks: link/set under the shared lock with the freeze in set_external_spte_present; "
       "remove/free under the exclusive lock",
       &make_baseline_design},
      {"split-hook",
       "\"[RFC PATCH 14/21] KVM: x86/tdp_mmu: Invoke split_external_spt hook with exclusive mmu_lock\" "
       "(Yan Zhao, 2025-04-24)",
       "the four hooks plus split_external_spt from the exclusive tdp_mmu_set_spte, with its own "
       "KVM_BUG_ON in the MMU core",
       &make_split_hook_design},
      {"centralized-rfc",
       "\"[RFC PATCH v5 00/45] TDX: Dynamic PAMT + S-EPT Hugepage\" (Sean Christopherson, 2026-01-28), "
       "as first posted",
       "one set_external_spte(gfn, old, new, level), freeze in tdp_mmu_set_spte_atomic, void "
       "reclaim_external_sp; page stats counted before the hook, so a refused map (BUSY) is counted anyway",
       &make_centralized_rfc_design},
      {"centralized-rfc-fixed",
       "the same RFC v5 with the fixes posted in its thread, Feb 2026 (Yan Zhao's stats fix)",
       "centralized-rfc with the page stats updated after the hook",
       &make_centralized_design},
      {"single-hook",
       "centralized-rfc-fixed + option 2 of \"Re: [PATCH 07/17] ...\" (Yan Zhao, 2026-04-07)",
       "the S-EPT page reclaim also through set_external_spte after call_rcu, relying on the RCU read "
       "lock held across handle_changed_spte",
       &make_single_hook_design},
  };
  return all;
}

const std::vector<WhatIfInfo>& what_ifs() {
  static const std::vector<WhatIfInfo> all = {
      {"no-rcu-in-zap", &WhatIf::no_rcu_in_zap,
       "exclusive zaps change a table without rcu_read_lock (option 2's reclaim after call_rcu unprotected)"},
      {"mirror-promotion", &WhatIf::mirror_promotion,
       "the fault path maps a 2M private leaf over an existing mirror table (promotion) instead of "
       "lowering its goal level"},
      {"no-memslot-invalid-bailout", &WhatIf::no_memslot_invalid_bailout,
       "TDX's EPT-violation local retry loop without the bail-out on a memslot being deleted"},
      {"no-wbinvd", &WhatIf::no_wbinvd,
       "TDX removes a private page without TDH.PHYMEM.PAGE.WBINVD, so its cache lines under the TD's key "
       "are never written back before guest_memfd frees it"},
      {"no-vm-state-locks", &WhatIf::no_vm_state_locks,
       "KVM_TDX_INIT_MEM_REGION and KVM_TDX_FINALIZE_VM without kvm->lock, the vCPU mutexes and slots_lock: "
       "the TD state is checked once, and finalize may land between a PAGE.ADD and its MR.EXTEND"},
      {"fast-zap-mirror", &WhatIf::fast_zap_mirror,
       "kvm_mmu_zap_all_fast() invalidates the mirror root with the direct ones, as before TDX"},
      {"no-kick-after-track", &WhatIf::no_kick_after_track,
       "tdx_track() issues TDH.MEM.TRACK but does not kick the vCPUs out of the guest, so vCPUs of the old epoch "
       "keep it open"},
      {"lax-tlb-tracking", &WhatIf::lax_tlb_tracking,
       "a TDX module whose TDH.MEM.TRACK does not wait for the previous epoch's vCPUs to leave the guest, and "
       "counts a block as tracked after any later TRACK"},
      {"no-flush-after-unmap", &WhatIf::no_flush_after_unmap,
       "the VM's unmap of a gfn range (conversion, memslot deletion, guest_memfd hole) drops the TLB flush "
       "the TDP MMU asks for"},
      {"no-wrprot-on-clear", &WhatIf::no_wrprot_on_clear,
       "KVM_CLEAR_DIRTY_LOG (manual protect) clears the dirty bits but does not write-protect the pages again, so "
       "the next write to them is never logged"},
      {"notifier-first-slot-only", &WhatIf::notifier_first_slot_only,
       "the MMU notifier unmaps changed host memory from the first memslot that maps it only; its aliases keep "
       "mapping it (writable after an mprotect to read-only)"},
      {"prefault-progress-max-level", &WhatIf::prefault_progress_max_level,
       "KVM_PRE_FAULT_MEMORY reports the whole 2M around a GPA done after mapping one 4K page of it"},
      {"no-invalidate-retry", &WhatIf::no_invalidate_retry,
       "a fault never asks mmu_invalidate_retry_gfn(), so a pfn looked up before an MMU notifier invalidation "
       "is mapped after it"},
      {"prefault-retries-invalid-slot", &WhatIf::prefault_retries_invalid_slot,
       "KVM_PRE_FAULT_MEMORY retries on a memslot being deleted (6.12) instead of returning -EAGAIN, holding the "
       "SRCU read lock the deletion waits for"},
      {"alloc-root-recheck-unlocked", &WhatIf::alloc_root_recheck_unlocked,
       "kvm_tdp_mmu_alloc_root() drops tdp_mmu_pages_lock between looking for a usable root and adding a new one, so "
       "two vCPUs loading their first root at once make two (a TD's second mirror root re-links the S-EPT's upper "
       "levels)"},
      {"split-pool-topup-apart", &WhatIf::split_pool_topup_apart,
       "with the TDX-side S-EPT pool (--external-spt tdx-pool), a split tops the VM's pool up under one hold of its "
       "lock and takes its page under another, so two splits at once can find the one page gone"},
  };
  return all;
}

std::string what_if_refusal(const WhatIf& w, std::string_view design, bool huge_pages) {
  if (w.mirror_promotion && !huge_pages)
    return "--what-if mirror-promotion needs --huge-pages: without 2M private leaves nothing can be promoted";
  if (w.mirror_promotion) {
    const DesignInfo* d = find_design(design);
    if (d && !d->make()->supports_mirror_huge())
      return fmt::format("--what-if mirror-promotion: design '{}' maps no private huge pages", design);
  }
  return {};
}

bool parse_what_ifs(std::string_view list, WhatIf* w, std::string* error) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view name = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    const auto it = std::find_if(what_ifs().begin(), what_ifs().end(), [&](const WhatIfInfo& i) { return i.name == name; });
    if (it == what_ifs().end()) {
      std::string valid;
      for (const auto& i : what_ifs()) valid += (valid.empty() ? "" : ", ") + std::string(i.name);
      *error = fmt::format("unknown --what-if '{}' (valid: {})", name, valid);
      return false;
    }
    w->*(it->flag) = true;
  }
  return true;
}

std::string design_spec(std::string_view design, const WhatIf& w) {
  std::string s(design);
  for (const auto& i : what_ifs())
    if (w.*(i.flag)) s.append("+").append(i.name);
  return s;
}

bool parse_design_spec(std::string_view spec, std::string* design, WhatIf* w, std::string* error) {
  const size_t plus = spec.find('+');
  *design = std::string(spec.substr(0, plus));
  if (!find_design(*design)) {
    *error = "unknown design '" + *design + "' (valid: " + design_names() + ")";
    return false;
  }
  std::string list(plus == std::string_view::npos ? std::string_view{} : spec.substr(plus + 1));
  for (char& c : list)
    if (c == '+') c = ',';
  return parse_what_ifs(list, w, error);
}

std::string design_names() {
  std::string s;
  for (const auto& d : designs()) s += (s.empty() ? "" : ", ") + d.name;
  return s;
}

const std::vector<DesignInfo>& designs() { return registry(); }

void register_design(DesignInfo d) { registry().push_back(std::move(d)); }

const DesignInfo* find_design(std::string_view name) {
  for (const auto& d : designs())
    if (d.name == name) return &d;
  return nullptr;
}

}  // namespace mirrormmu
