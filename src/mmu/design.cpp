#include "mmu/design.h"

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
  static std::vector<DesignInfo> all = {
      {"baseline",
       "upstream [B]: four hooks (link/set under the shared lock with the freeze in "
       "set_external_spte_present; remove/free under the exclusive lock)",
       &make_baseline_design},
      {"centralized",
       "[P1]/[P2]: one set_external_spte(gfn, old, new, level) for every mirror change, freeze in "
       "tdp_mmu_set_spte_atomic, stats after the hook, void reclaim hook; TDX splits on present->present",
       &make_centralized_design},
      {"split-hook",
       "[HP] RFC: the four hooks plus split_external_spt from the exclusive tdp_mmu_set_spte, "
       "with its own KVM_BUG_ON in the MMU core",
       &make_split_hook_design},
      {"single-hook",
       "centralized, and the S-EPT page reclaim also through set_external_spte after call_rcu, "
       "relying on the RCU read lock held across handle_changed_spte (option 2)",
       &make_single_hook_design},
      {"centralized-rfc",
       "centralized as first posted ([P1] RFC v5): page stats counted before set_external_spte, so a "
       "refused map (BUSY) is counted anyway (fixed upstream after Yan Zhao's report)",
       &make_centralized_rfc_design},
  };
  return all;
}

const std::vector<DesignInfo>& designs() { return registry(); }

void register_design(DesignInfo d) { registry().push_back(std::move(d)); }

const DesignInfo* find_design(std::string_view name) {
  for (const auto& d : designs())
    if (d.name == name) return &d;
  return nullptr;
}

}  // namespace mirrormmu
