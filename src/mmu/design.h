// SPDX-License-Identifier: MIT
// A hook design: which external hook the TDP MMU calls at which point.
//
// The mailing-list threads argue about this layout (separate link/set hooks
// or one set hook, where the freeze lives, whether reclaim goes through the
// set hook, a dedicated split hook). Each layout is a small class in
// mmu/designs/, registered by name; the TDP MMU calls the design only for
// mirror SPTEs, so direct roots never pay for it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/types.h"
#include "mmu/external_ops.h"

namespace mirrormmu {

class TdpMmu;
struct TdpIter;
struct MmuPage;

class HookDesign {
 public:
  virtual ~HookDesign() = default;
  virtual std::string_view name() const = 0;
  // Mirror huge pages need a way to split a private huge leaf (demote) under
  // the exclusive lock. A design without one says why, and the VM refuses
  // to enable them rather than silently mapping 4K.
  virtual bool supports_mirror_huge() const { return false; }
  virtual std::string_view mirror_huge_refusal() const {
    return "the design has no hook to split (demote) a private huge page";
  }

  // Which TDX-side code (tdx.c of which posting) the layout pairs with.
  virtual ExternalLayout external_layout() const { return ExternalLayout::FourHooks; }

  // The mirror branch of tdp_mmu_set_spte_atomic(), all of it: the checks,
  // the freeze, the external update and handle_changed_spte() on success.
  // On failure iter.old_spte holds the current value and the mirror entry is
  // exactly as it was.
  virtual int set_spte_atomic_mirror(TdpMmu& mmu, TdpIter& iter, uint64_t new_spte) = 0;
  // From __handle_changed_spte() for every change of a mirror SPTE except a
  // table being removed: the merged layer's one place of propagation. The
  // error goes back to the atomic setter (which restores the entry) or into
  // handle_changed_spte()'s KVM_BUG_ON.
  virtual int propagate_changed_spte(TdpMmu& mmu, Gfn gfn, uint64_t old_spte, uint64_t new_spte,
                                     PgLevel level, bool shared) {
    return 0;
  }
  // From __handle_changed_spte() after handle_removed_pt() has processed
  // (and queued for call_rcu) the table old_spte linked.
  virtual int propagate_removed_table(TdpMmu& mmu, Gfn gfn, uint64_t old_spte, uint64_t new_spte,
                                      PgLevel level, bool shared) {
    return 0;
  }
  // After tdp_mmu_set_spte() changed a mirror SPTE under the exclusive lock.
  virtual void after_set_spte_mirror(TdpMmu& mmu, Gfn gfn, uint64_t old_spte, uint64_t new_spte,
                                     PgLevel level) = 0;
  // handle_removed_pt(): one child of a removed mirror table, after it was
  // frozen and accounted.
  virtual void removed_child_mirror(TdpMmu& mmu, Gfn gfn, uint64_t old_spte, PgLevel level,
                                    bool shared) = 0;
  // handle_removed_pt(): every child processed; release the external table.
  virtual void removed_pt_mirror(TdpMmu& mmu, MmuPage& sp) = 0;
};

// Code variants the seed threads ask about, each selectable from the CLI
// (--what-if NAME) so the question can be run rather than argued. Off, the
// code is what the design's posting has.
struct WhatIf {
  // Exclusive zaps run handle_changed_spte() for a table without holding
  // rcu_read_lock: option 2 (reclaim through the set hook after call_rcu)
  // with the one thing it relies on taken away.
  bool no_rcu_in_zap = false;
  // The fault path maps a huge leaf over an existing mirror table instead
  // of lowering its goal level: promotion, which the S-EPT cannot follow.
  bool mirror_promotion = false;
  // TDX's EPT-violation local retry without "Bail if the memslot is
  // invalid" (the 6.18 fix): a fault on a slot being deleted retries
  // forever while holding SRCU, and the deletion waits for it.
  bool no_memslot_invalid_bailout = false;
  // tdx_sept_remove_private_spte() without TDH.PHYMEM.PAGE.WBINVD: what an
  // ACT platform allows, on one without it.
  bool no_wbinvd = false;
  // KVM_TDX_INIT_MEM_REGION and KVM_TDX_FINALIZE_VM without kvm->lock, the
  // vCPU mutexes and slots_lock around the state check and the whole build
  // step: the state is checked once up front, as before the 6.18 guard.
  bool no_vm_state_locks = false;
  // kvm_mmu_zap_all_fast() invalidates every root, the mirror too, as it
  // did before TDX: the S-EPT has no fast zap, so the mirror must only go
  // away through its own removal path.
  bool fast_zap_mirror = false;
  // tdx_track() without kicking the vCPUs out of the guest afterwards: the
  // ones that entered before the TRACK keep the old epoch alive.
  bool no_kick_after_track = false;
  // A TDX module whose TRACK does not wait for the previous epoch's vCPUs
  // to leave (tdx::ModuleConfig::lax_tlb_tracking).
  bool lax_tlb_tracking = false;
  // kvm_mmu_unmap_gfn_range() callers that drop the flush it asks for.
  bool no_flush_after_unmap = false;
  // KVM_CLEAR_DIRTY_LOG clears the bits without write-protecting the pages
  // again: the next write to one of them is never logged.
  bool no_wrprot_on_clear = false;
  // The MMU notifier unmaps the host range from the first memslot that maps
  // it and stops: aliases of the same memory (mmu_stress_test's slots) keep
  // writable mappings of pages the host made read-only.
  bool notifier_first_slot_only = false;
  // KVM_PRE_FAULT_MEMORY advances past the largest page the slot could map
  // at the GPA instead of the level the fault mapped: the pages after a 4K
  // mapping in the same 2M are reported done and never mapped.
  bool prefault_progress_max_level = false;
  // A fault never asks mmu_invalidate_retry_gfn(): a pfn it looked up
  // before an MMU-notifier invalidation (an mprotect, a conversion) is
  // mapped after the invalidation has unmapped the range.
  bool no_invalidate_retry = false;
  // 6.12's KVM_PRE_FAULT_MEMORY: a prefault meeting a memslot being deleted
  // retries instead of returning -EAGAIN, holding the SRCU read lock the
  // deletion waits for.
  bool prefault_retries_invalid_slot = false;
  // kvm_tdp_mmu_alloc_root() looks for a usable root and inserts a new one
  // under two holds of tdp_mmu_pages_lock: two vCPUs loading their first
  // root at once both allocate one, and a TD's second mirror root links its
  // own upper levels into the one S-EPT (SEPT.ADD on an entry not FREE).
  bool alloc_root_recheck_unlocked = false;
  // The TDX-side S-EPT pool (single-hook's external fault cache) serving a
  // split with mmu_lock dropped: topped up to one page under one hold of its
  // lock and taken under another. Two splits at once both top up to the one
  // page, the first takes it, the second finds the pool empty.
  bool split_pool_topup_apart = false;
};

struct WhatIfInfo {
  std::string_view name;
  bool WhatIf::*flag;
  std::string_view help;
};
// Every switch, in the order --help lists them.
const std::vector<WhatIfInfo>& what_ifs();
// Why `design` cannot honour the switches in `w`, in one line; empty when it can.
std::string what_if_refusal(const WhatIf& w, std::string_view design, bool huge_pages);
// Parses "a,b"; on an unknown name returns false and names it in *error.
bool parse_what_ifs(std::string_view list, WhatIf* w, std::string* error);

struct DesignInfo {
  std::string name;
  std::string posting;  // the merged code or posting it reproduces: title, author, date
  std::string description;
  std::unique_ptr<HookDesign> (*make)();
};

// Every registered design, in registration order.
const std::vector<DesignInfo>& designs();
// Adds a design (tests plant deliberately broken ones this way). Not
// thread-safe: call before any VM is created.
void register_design(DesignInfo d);
const DesignInfo* find_design(std::string_view name);
// A design with what-if switches, as one token for replay strings and
// reports: "upstream+no-memslot-invalid-bailout". Parsing checks both parts
// and names the bad one in *error.
std::string design_spec(std::string_view design, const WhatIf& w);
bool parse_design_spec(std::string_view spec, std::string* design, WhatIf* w, std::string* error);
// "upstream, hugepage-v5, ...": for error messages that list the valid names.
std::string design_names();
inline constexpr const char* kDefaultDesign = "upstream";

}  // namespace mirrormmu
