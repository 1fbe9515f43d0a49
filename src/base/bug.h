// SPDX-License-Identifier: MIT
// KVM_BUG_ON / WARN_ON_ONCE / TDX_BUG_ON / lockdep as recorded events.
//
// In the kernel these print a splat; here every site is a named entry of one
// catalog so a run can report which sites fired and how often, and so tests
// can assert that a path was (or was not) taken. A KVM_BUG_ON or TDX_BUG_ON
// with a VM marks that VM bugged, as kvm_vm_bugged() does: the caller keeps
// going, later operations are refused, and teardown must still reclaim pages.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

namespace mirrormmu {

enum class BugKind : uint8_t { KvmBugOn, TdxBugOn, Warn, Bug, Lockdep };

// The catalog. Names follow the kernel function that holds the check.
#define MIRRORMMU_BUG_SITES(X)                                                                 \
  X(put_root_valid, KvmBugOn, "kvm_tdp_mmu_put_root: last reference to a valid root")        \
  X(zap_invalidated_not_invalid, KvmBugOn, "kvm_tdp_mmu_zap_invalidated_roots: root not invalid") \
  X(atomic_mirror_not_present, KvmBugOn, "__tdp_mmu_set_spte_atomic: mirror SPTE set non-present") \
  X(external_old_present, KvmBugOn, "set_external_spte_present: old SPTE present")            \
  X(external_spt_null, KvmBugOn, "set_external_spte_present: child external_spt is NULL")     \
  X(link_child_mismatch, Warn, "set_external_spte_present: child sp level or gfn does not match the entry") \
  X(set_spte_mirror_present, KvmBugOn, "tdp_mmu_set_spte: mirror SPTE set present")           \
  X(removed_pt_mirror_shared, KvmBugOn, "handle_removed_pt: mirror table removed under shared lock") \
  X(map_mirror_split, KvmBugOn, "kvm_tdp_mmu_map: huge mirror SPTE would need a split")        \
  X(changed_spte_bad_level, Warn, "handle_changed_spte: level out of range")                  \
  X(changed_spte_unaligned, Warn, "handle_changed_spte: gfn not aligned to level")            \
  X(changed_spte_nonpresent, Warn, "handle_changed_spte: non-present to non-present change")  \
  X(changed_spte_nonleaf_pfn, Warn, "handle_changed_spte: non-leaf replaced by another non-leaf") \
  X(changed_spte_leaf_pfn, Bug, "handle_changed_spte: present leaf changed pfn (BUG)")        \
  X(free_external_spt_failed, Warn, "handle_removed_pt: free_external_spt failed, page leaked") \
  X(iter_yielded, Warn, "tdp_mmu_set_spte: iterator already yielded")                         \
  X(set_frozen, Warn, "tdp_mmu_set_spte: FROZEN_SPTE written or replaced exclusively")        \
  X(atomic_on_frozen, Warn, "__tdp_mmu_set_spte_atomic: old SPTE is FROZEN")                  \
  X(map_no_goal, Warn, "kvm_tdp_mmu_map: walk ended above the goal level")                    \
  X(nx_untracked_sp, Warn, "kvm_recover_nx_huge_pages: listed sp not nx_huge_page_disallowed") \
  X(nx_zap_root, Warn, "kvm_tdp_mmu_zap_possible_nx_huge_page: sp without a parent entry")    \
  X(map_sp_level, Warn, "tdp_mmu_map_handle_target_level: sp level != goal level")            \
  X(map_spurious_pfn, Warn, "tdp_mmu_map_handle_target_level: present leaf maps another pfn")   \
  X(map_leaf_needs_flush, Warn, "tdp_mmu_map_handle_target_level: leaf change needs a TLB flush") \
  X(invalidate_underflow, KvmBugOn, "kvm_mmu_invalidate_end: mmu_invalidate_in_progress < 0") \
  X(uninit_pages_left, Warn, "kvm_mmu_uninit_tdp_mmu: tdp_mmu_pages != 0")                    \
  X(uninit_roots_left, Warn, "kvm_mmu_uninit_tdp_mmu: roots list not empty")                  \
  X(memcache_empty, Warn, "kvm_mmu_memory_cache_alloc: cache empty")                          \
  X(free_sp_without_rcu, Warn, "tdp_mmu_free_sp: a linked page table freed without a grace period") \
  X(tdx_set_level, KvmBugOn, "tdx_sept_set_private_spte: level above what the TD state allows") \
  X(tdx_set_not_present, KvmBugOn, "tdx_sept_set_private_spte: new SPTE not present")        \
  X(tdx_split_bad, KvmBugOn, "tdx_sept_split_private_spte: not a 2M leaf becoming a table")   \
  X(tdx_pool_empty, Warn, "tdx_alloc_external_fault_cache: TDX pool empty")                   \
  X(split_external_spt_failed, KvmBugOn, "split_external_spt: hook failed")                   \
  X(set_external_spte_failed, KvmBugOn, "handle_changed_spte: set_external_spte failed")      \
  X(set_spte_mirror_unsupported, KvmBugOn, "tdp_mmu_set_spte: mirror transition the external tree cannot do") \
  X(reclaim_without_rcu, Warn, "RCU_LOCKDEP_WARN: external table reclaimed after call_rcu without rcu_read_lock") \
  X(free_sp_external_live, Warn, "tdp_mmu_free_sp_rcu_callback: S-EPT page not reclaimed yet")   \
  X(tdx_set_not_rwx, Warn, "tdx_sept_set_private_spte: mirror SPTE lacks RWX")                \
  X(tdx_page_add_state, KvmBugOn, "tdx_mem_page_add: pre_fault_allowed or no page_add_src")    \
  X(tdx_remove_no_hkid, KvmBugOn, "tdx_sept_remove_private_spte: HKID not assigned")          \
  X(tdx_remove_level, KvmBugOn, "tdx_sept_remove_private_spte: level above 2M")               \
  X(tdx_free_hkid_assigned, KvmBugOn, "tdx_sept_free_private_spt: HKID still assigned")       \
  X(tdx_no_running_vcpu, KvmBugOn, "tdx_sept_map_*_spte: no running vCPU to take a PAMT cache from") \
  X(tdh_mem_page_aug, TdxBugOn, "TDX_BUG_ON: TDH.MEM.PAGE.AUG")                               \
  X(tdh_mem_page_add, TdxBugOn, "TDX_BUG_ON: TDH.MEM.PAGE.ADD")                               \
  X(tdh_mem_sept_add, TdxBugOn, "TDX_BUG_ON: TDH.MEM.SEPT.ADD")                               \
  X(tdh_mem_range_block, TdxBugOn, "TDX_BUG_ON: TDH.MEM.RANGE.BLOCK")                         \
  X(tdh_mem_track, TdxBugOn, "TDX_BUG_ON: TDH.MEM.TRACK")                                     \
  X(tdh_mem_page_remove, TdxBugOn, "TDX_BUG_ON: TDH.MEM.PAGE.REMOVE")                         \
  X(tdh_mem_page_demote, TdxBugOn, "TDX_BUG_ON: TDH.MEM.PAGE.DEMOTE")                         \
  X(tdh_phymem_page_wbinvd, TdxBugOn, "TDX_BUG_ON: TDH.PHYMEM.PAGE.WBINVD")                   \
  X(tdh_phymem_page_reclaim, Warn, "TDX_BUG_ON: TDH.PHYMEM.PAGE.RECLAIM (WARN only)")     \
  X(tdh_mr_extend, TdxBugOn, "TDX_BUG_ON: TDH.MR.EXTEND")                                     \
  X(tdh_mr_finalize, TdxBugOn, "TDX_BUG_ON: TDH.MR.FINALIZE")                                 \
  X(tdh_release_hkid, TdxBugOn, "TDX_BUG_ON: HKID release sequence")                          \
  X(tdh_phymem_cache_wb, Warn, "TDX_BUG_ON(TDH.PHYMEM.CACHE.WB, kvm=NULL): WARN only")          \
  X(tdh_td_create, TdxBugOn, "TDX_BUG_ON: TD creation")                                       \
  X(tdh_phymem_pamt_add, TdxBugOn, "TDX_BUG_ON: TDH.PHYMEM.PAMT.ADD (tdx_pamt_get)")           \
  X(tdh_phymem_pamt_remove, Warn, "tdx_pamt_put: TDH.PHYMEM.PAMT.REMOVE failed (WARN only, pair leaked)") \
  X(tdx_pamt_cache_empty, Warn, "tdx_pamt_get: PAMT cache empty (top-up bug)")                 \
  X(tdx_pamt_put_unbalanced, Warn, "tdx_pamt_put: no reference held on the page's 2M region")  \
  X(lockdep_not_write, Lockdep, "lockdep_assert_held_write(&kvm->mmu_lock)")                  \
  X(lockdep_not_read, Lockdep, "lockdep_assert_held_read(&kvm->mmu_lock)")                    \
  X(lockdep_not_held, Lockdep, "lockdep_assert_held(&kvm->mmu_lock)")

enum class Site : uint16_t {
#define MIRRORMMU_SITE_ENUM(id, kind, text) id,
  MIRRORMMU_BUG_SITES(MIRRORMMU_SITE_ENUM)
#undef MIRRORMMU_SITE_ENUM
  kCount
};
inline constexpr size_t kSiteCount = static_cast<size_t>(Site::kCount);

struct SiteInfo {
  std::string_view id;
  BugKind kind;
  std::string_view text;
};
const SiteInfo& site_info(Site s);
std::string_view bug_kind_name(BugKind k);

// Notified of every hit; the checker and the event trace implement it.
class BugObserver {
 public:
  virtual ~BugObserver() = default;
  virtual void on_bug_site(Site s, bool vm_bugged_now) = 0;
};

// Per-VM state behind KVM_BUG_ON: the "bugged" flag plus the hit counters.
class BugTracker {
 public:
  bool bugged() const { return bugged_.load(std::memory_order_acquire); }
  uint64_t hits(Site s) const { return hits_[static_cast<size_t>(s)].load(std::memory_order_relaxed); }
  uint64_t total_hits() const;
  Site first_bug() const { return first_bug_.load(std::memory_order_acquire); }
  void set_observer(BugObserver* o) { observer_ = o; }
  BugObserver* observer() const { return observer_; }

  // Records a hit; marks the VM bugged when the site's kind says so.
  void hit(Site s);

 private:
  std::array<std::atomic<uint64_t>, kSiteCount> hits_{};
  std::atomic<bool> bugged_{false};
  std::atomic<Site> first_bug_{Site::kCount};
  BugObserver* observer_ = nullptr;
};

// The kernel's macros as functions: each returns its condition so it can sit
// in an `if`, exactly like `if (KVM_BUG_ON(cond, kvm)) return -EIO;`.
inline bool kvm_bug_on(bool cond, BugTracker& kvm, Site s) {
  if (cond) [[unlikely]] kvm.hit(s);
  return cond;
}
inline bool warn_on_once(bool cond, BugTracker& kvm, Site s) {
  if (cond) [[unlikely]] kvm.hit(s);
  return cond;
}
// TDX_BUG_ON(err, FN, kvm): non-zero status is a failure (even the "warning"
// class statuses with bit 63 clear, as in tdx.c).
inline bool tdx_bug_on(uint64_t err, BugTracker& kvm, Site s) {
  if (err != 0) [[unlikely]] kvm.hit(s);
  return err != 0;
}

}  // namespace mirrormmu
