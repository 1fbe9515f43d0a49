// SPDX-License-Identifier: MIT
// The TDP MMU of one VM: its roots (direct, and mirror for a TD), mmu_lock,
// the SPTE write protocol, fault-in, zapping, splitting and write-protection.
// Function names are tdp_mmu.c's so the two can be read side by side.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "base/bug.h"
#include "base/percpu_counter.h"
#include "base/thread_counters.h"
#include "base/inject.h"
#include "mem/memory_cache.h"
#include "mem/pfn_pool.h"
#include "mmu/design.h"
#include "mmu/external_ops.h"
#include "mmu/mmu_page.h"
#include "mmu/observer.h"
#include "mmu/tdp_iter.h"
#include "spte/spte.h"
#include "sync/mmu_lock.h"
#include "sync/tracked_mutex.h"

namespace mirrormmu {

// enum kvm_tdp_mmu_root_types
enum RootTypes : unsigned {
  kInvalidRoots = 1,
  kDirectRoots = 2,
  kMirrorRoots = 4,
  kValidRoots = kDirectRoots | kMirrorRoots,
  kAllRoots = kValidRoots | kInvalidRoots,
};

// Which side of a TD's memory an invalidation is for (KVM_FILTER_*).
enum class GfnFilter : uint8_t { Private = 1, Shared = 2, Both = 3 };

struct GfnRange {
  Gfn start;
  Gfn end;  // exclusive
  GfnFilter filter = GfnFilter::Both;
  bool may_block = true;
};

// RET_PF_*
enum class RetPf : uint8_t { Continue, Retry, Fixed, Spurious, Emulate, WriteProtected, Invalid };
const char* ret_pf_name(RetPf r);

struct KvmPageFault {
  uint64_t addr = 0;            // full GPA, including the shared bit
  Gfn gfn{};                    // addr's frame without the direct bits
  bool write = false;
  bool exec = false;            // an instruction fetch
  bool prefetch = false;
  bool is_private = false;
  bool has_slot = true;         // false: emulated MMIO
  Pfn pfn = kInvalidPfn;
  bool map_writable = true;
  PgLevel max_level = PgLevel::k4K;
  PgLevel req_level = PgLevel::k4K;
  PgLevel goal_level = PgLevel::k4K;
  // kvm_mmu_hugepage_adjust() with the NX huge page workaround on: an exec
  // fault may not map huge (goal_level is 4K, req_level what it could be).
  bool huge_page_disallowed = false;
};

// The per-vCPU caches the fault path allocates from (topped up outside the lock).
struct VcpuMmuCaches {
  explicit VcpuMmuCaches(PfnPool& pool, int vcpu_id = -1);
  int vcpu_id;                    // for an external (TDX-side) pool kept per vCPU
  PageCache shadow_page_cache;    // sp->spt, pre-filled with SHADOW_NONPRESENT_VALUE
  PageCache external_spt_cache;   // sp->external_spt, not initialised
  ObjectCache<MmuPage> page_header_cache;
  void free_all();
};

// Who allocates sp->external_spt (the NAK'd "external spt cache" thread).
// Either way the MMU frees it with the sp.
enum class ExternalSptPolicy : uint8_t {
  KvmCache,  // [B]: the vCPU's mmu_external_spt_cache; splits allocate per VM
  TdxPool,   // the RFC: TDX pre-allocates (per vCPU, and per VM for splits)
  // What seed 003 (Sean's NAK) describes of that RFC: faults take TDX's
  // pre-allocated pages, splits a fresh get_zeroed_page(), and the MMU frees
  // them all alike.
  Mixed,
};
// What a table allocated for a split holds before the split writes it.
enum class SplitAlloc : uint8_t {
  Prefilled,  // SHADOW_NONPRESENT_VALUE, as the vCPU cache does (Kai's proposal)
  Unfilled,   // whatever the page held (tdp_mmu_alloc_sp_for_split after the fix)
};
const char* external_spt_policy_name(ExternalSptPolicy p);
const char* split_alloc_name(SplitAlloc a);

// The pattern an unfilled split table starts with: never a value KVM writes
// (and not present, so a walker that reads it takes it for garbage rather
// than following it), so a checker that finds it in a reachable table knows
// the entry was never written.
inline constexpr uint64_t kUnfilledSpte = 0x6b6b6b6b6b6b636bull;
static_assert(!spte::is_shadow_present(kUnfilledSpte), "the unfilled pattern must not be MMU-present");

struct TdpMmuConfig {
  ExternalSptPolicy external_spt_policy = ExternalSptPolicy::KvmCache;
  SplitAlloc split_alloc = SplitAlloc::Prefilled;
  PgLevel root_level = PgLevel::k512G;  // 4-level EPT; k256T for 5-level
  bool has_mirrored_tdp = false;  // a TD: private GPAs go to a mirror root
  // A fault whose access the present leaf already allows returns SPURIOUS
  // before make_spte() (6.13, "Treat TDP MMU faults as spurious if access is
  // already allowed"). Off reproduces 6.12, which rebuilds the leaf and so
  // drops a Dirty bit the old one had: the oracle of a 6.12 tree needs it.
  bool spurious_if_access_allowed = true;
  // A planted bug: exclusive writes store plainly even over an entry with
  // volatile bits (kvm_tdp_mmu_write_spte() without its xchg).
  bool plain_store_over_volatile = false;
  // Another: tdp_mmu_zap_spte_atomic() without its TLB flush.
  bool zap_atomic_no_flush = false;
  // The iTLB multihit workaround (nx_huge_pages=on): huge leaves of the
  // direct roots are never executable; an exec fault maps 4K under a table
  // the recovery worker may later zap back into a huge page.
  bool nx_huge_pages = false;
  // Aging without mmu_lock, as upstream since 6.15 ("KVM: x86/mmu: Age
  // TDP MMU SPTEs without holding mmu_lock"): the caller takes no lock.
  bool lockless_aging = false;
  // A planted bug for it: the lockless clear of Accessed stores the value it
  // read minus the bit, rather than clearing the bit in place.
  bool age_plain_store = false;
  uint64_t gfn_direct_bits = 0;   // the shared bit as a gfn mask (TDX)
  uint64_t mmio_value = 0;        // shadow_mmio_value of the VM
  uint64_t max_gfn_exclusive = 0; // tdp_mmu_max_gfn_exclusive()
  WhatIf what_if;
};

struct TdpMmuStats {
  // Bumped by every fault and zap. kvm->stat.pages is one atomic64 per
  // level upstream; per-thread blocks here keep vCPU threads of the model
  // off each other's cache lines and the fault path free of a locked add.
  // A zap adds a negative delta (two's complement: the sum wraps back).
  // Read under the exclusive lock, or where a sum in flux will do.
  ThreadCounters<kMaxHugeLevel> page_counts;  // pages_4k, pages_2m, pages_1g
  int64_t pages(int level_index) const { return static_cast<int64_t>(page_counts.sum(level_index)); }
  PercpuCounter<int64_t> tdp_mmu_pages;
  std::atomic<uint64_t> remote_tlb_flushes{0};
  std::atomic<uint64_t> root_allocs{0};
  std::atomic<uint64_t> yields{0};
  std::atomic<uint64_t> splits{0};        // huge leaves split (direct and mirror)
  std::atomic<uint64_t> split_allocs{0};  // tables allocated with mmu_lock dropped
  std::atomic<uint64_t> nx_lpage_splits{0};  // sps on possible_nx_huge_pages
};

class TdpMmu {
 public:
  TdpMmu(PfnPool& pool, BugTracker& kvm, TdpMmuConfig cfg, FaultInjector* inject = nullptr);
  ~TdpMmu();
  TdpMmu(const TdpMmu&) = delete;
  TdpMmu& operator=(const TdpMmu&) = delete;

  void set_external(ExternalOps* ops, std::unique_ptr<HookDesign> design);
  void set_observer(MmuObserver* o) { observer_ = o; }
  MmuObserver* observer() const { return observer_; }
  void set_remote_tlb(RemoteTlb* t) { remote_tlb_ = t; }
  // Before the first table only: faults read it without a lock.
  void set_nx_huge_pages(bool on) { cfg_.nx_huge_pages = on; }
  // Yield every `n` iterator steps in yield-safe walks (0: only on contention).
  // Exercises restart-after-yield the way KVM_PROVE_MMU exercises huge zaps.
  void set_resched_interval(unsigned n) { resched_interval_ = n; }

  sync::MmuLock& mmu_lock() { return mmu_lock_; }
  PfnPool& pool() { return pool_; }
  BugTracker& kvm() { return kvm_; }
  ExternalOps* external() { return external_; }
  HookDesign* design() { return design_.get(); }
  const TdpMmuConfig& config() const { return cfg_; }
  const TdpMmuStats& stats() const { return stats_; }

  // ---- roots --------------------------------------------------------------
  // mmu_topup_memory_caches(): outside mmu_lock. Worst case per fault is
  // one table per level below the root, each with an S-EPT page for a
  // mirror. Inline while the caches are full, as every fault finds them.
  int mmu_topup_memory_caches(VcpuMmuCaches& c) {
    if (cfg_.has_mirrored_tdp) [[unlikely]]
      if (int r = mmu_topup_external_caches(c)) return r;
    if (int r = c.shadow_page_cache.topup(kRootMaxLevel, inject_)) return r;
    return c.page_header_cache.topup(kRootMaxLevel);
  }
  MmuPage* kvm_tdp_mmu_alloc_root(VcpuMmuCaches& c, bool mirror);  // returns a referenced root
  void kvm_tdp_mmu_put_root(MmuPage* root);
  void kvm_tdp_mmu_invalidate_roots(unsigned types);
  void kvm_tdp_mmu_zap_invalidated_roots(bool shared);
  void kvm_mmu_uninit_tdp_mmu();
  std::vector<MmuPage*> roots_snapshot(unsigned types);  // referenced; caller puts
  uint64_t kvm_gfn_root_bits(const MmuPage* root) const {
    return root->is_mirror() ? 0 : cfg_.gfn_direct_bits;
  }

  // ---- faults -------------------------------------------------------------
  RetPf kvm_tdp_mmu_map(VcpuMmuCaches& c, MmuPage* direct_root, MmuPage* mirror_root, KvmPageFault& f);
  // The last SPTE on the walk to gfn, for fast_page_fault(); caller is in an
  // RCU read section (kvm_tdp_mmu_walk_lockless_begin) and holds no lock.
  uint64_t* kvm_tdp_mmu_fast_pf_get_last_sptep(MmuPage* root, Gfn gfn, uint64_t* spte, PgLevel* level);

  // ---- zapping (mmu_lock held for write) ----------------------------------
  bool kvm_tdp_mmu_zap_leafs(Gfn start, Gfn end, bool flush);
  bool kvm_tdp_mmu_unmap_gfn_range(const GfnRange& range, bool flush);
  void kvm_tdp_mmu_zap_all();  // direct roots only; mirrors survive until teardown

  // ---- splitting ----------------------------------------------------------
  // kvm_tdp_mmu_try_split_huge_pages(): split every huge leaf of the direct
  // roots in [start, end) down to target_level, under mmu_lock held in the
  // mode given (eager splitting on dirty-log enable uses the shared lock).
  // Tables are allocated with the lock dropped. 0 or -ENOMEM.
  int kvm_tdp_mmu_try_split_huge_pages(Gfn start, Gfn end, PgLevel target_level, bool shared);
  // kvm_tdp_mmu_mirrors_split_huge_pages(): the same on mirror roots, only
  // under the exclusive lock (each split is BLOCK, TRACK, DEMOTE).
  int kvm_tdp_mmu_mirrors_split_huge_pages(Gfn start, Gfn end, PgLevel target_level);

  // ---- huge page recovery -------------------------------------------------
  // kvm_tdp_mmu_zap_collapsible_sptes(): when a slot stops logging, zap
  // every table of the valid direct roots in [start, end) that a huge leaf
  // could replace (max_level(gfn) at least its level), so the next fault
  // maps huge again. mmu_lock held for read; each zap freezes the entry,
  // flushes, then writes it non-present (tdp_mmu_zap_spte_atomic()).
  template <class MaxLevel>
  void kvm_tdp_mmu_zap_collapsible_sptes(Gfn start, Gfn end, MaxLevel&& max_level) {
    zap_collapsible_sptes(start, end, [](void* ctx, Gfn g) { return (*static_cast<MaxLevel*>(ctx))(g); }, &max_level);
  }
  // tdp_mmu_zap_spte_atomic(); 0 or -EBUSY (the entry changed).
  int tdp_mmu_zap_spte_atomic(TdpIter& iter);

  // ---- dirty logging ------------------------------------------------------
  // kvm_tdp_mmu_wrprot_slot(): mmu_lock held for read.
  bool kvm_tdp_mmu_wrprot_slot(Gfn start, Gfn end, PgLevel min_level);
  // kvm_tdp_mmu_clear_dirty_pt_masked(): write-protect the 4K leaves of
  // gfn_base + set bits of mask; mmu_lock held for write.
  void kvm_tdp_mmu_clear_dirty_pt_masked(Gfn gfn_base, uint64_t mask);

  // ---- aging (the clear_young and test_young notifiers) -------------------
  // kvm_tdp_mmu_age_gfn_range() / kvm_tdp_mmu_test_age_gfn(): whether a
  // leaf of the direct roots in [start, end) was accessed, clearing
  // Accessed unless only testing. mmu_lock held for write (6.12), or with
  // TdpMmuConfig::lockless_aging under RCU alone, valid roots only, each
  // clear an atomic and (6.15 on). Nothing is flushed, so a vCPU may go on
  // using a cached translation without setting Accessed again (aging is
  // only ever approximate).
  bool kvm_tdp_mmu_age_gfn_range(Gfn start, Gfn end);
  bool kvm_tdp_mmu_test_age_gfn(Gfn start, Gfn end);

  // ---- NX huge pages (tdp_mmu_nx.cpp) ------------------------------------
  // The recovery worker's list: pops the oldest possible NX huge page
  // (unaccount_nx_huge_page()), null when there is none.
  MmuPage* pop_possible_nx_huge_page();
  // kvm_tdp_mmu_zap_possible_nx_huge_page(): under mmu_lock for read (and
  // RCU, held by the caller across the flush), zap the entry that links sp
  // if it still does. True if it did: the caller owes a flush before it
  // leaves RCU.
  bool kvm_tdp_mmu_zap_possible_nx_huge_page(MmuPage* sp);

  void kvm_flush_remote_tlbs();
  void kvm_flush_remote_tlbs_range(Gfn start, uint64_t npages);
  void kvm_flush_remote_tlbs_gfn(Gfn gfn, PgLevel level) {
    kvm_flush_remote_tlbs_range(gfn_round_for_level(gfn, level), pages_per_hpage(level));
  }

  // ---- the SPTE write protocol (used by designs and tests) ----------------
  // tdp_mmu_set_spte_atomic(): a cmpxchg against the caller's snapshot,
  // then the change handling. A mirror SPTE belongs to the design: every
  // layout argued about puts the freeze, the external update and the bug
  // checks somewhere else, and the direct root must not pay for any of it.
  // Inline: it is the last step of every fault.
  int tdp_mmu_set_spte_atomic(TdpIter& iter, uint64_t new_spte) {
    sync::assert_held_read(mmu_lock_, kvm_);
    // Callers must skip frozen entries themselves: only the freezer writes one.
    warn_on_once(iter.yielded || spte::is_frozen(iter.old_spte), kvm_, Site::atomic_on_frozen);
    if (iter.is_mirror() && !spte::is_frozen(new_spte)) [[unlikely]]
      return design_->set_spte_atomic_mirror(*this, iter, new_spte);
    const uint64_t old_spte = iter.old_spte;
    if (!sync::cmpxchg_spte(iter.sptep, iter.old_spte, new_spte)) return -EBUSY;
    handle_changed_spte(iter.sp(), iter.gfn, old_spte, new_spte, iter.level, true);
    return 0;
  }
  // `sp` is the table holding sptep (sptep_to_sp()); is_mirror_sp(sp) is
  // what routes a change to the external hooks.
  uint64_t tdp_mmu_set_spte(MmuPage* sp, uint64_t* sptep, uint64_t old_spte, uint64_t new_spte,
                            Gfn gfn, PgLevel level);
  void tdp_mmu_iter_set_spte(TdpIter& iter, uint64_t new_spte);
  // The merged layer's split: __handle_changed_spte() returns the external
  // hook's error (the atomic path restores the entry and lets the caller
  // retry), handle_changed_spte() is KVM_BUG_ON() of it (nothing to retry
  // under the exclusive lock).
  // Both inline: every fault's leaf goes through them, and two calls deep
  // before the handling was 30 of a direct fault's instructions. Without an
  // observer each is a single branch.
  int __handle_changed_spte(MmuPage* sp, Gfn gfn, uint64_t old_spte, uint64_t new_spte,
                            PgLevel level, bool shared) {
    if (!observer_) [[likely]] {
      // Something installed where nothing was, outside the mirror: every
      // fault's leaf and every table it links. Nothing can have been freed
      // or remapped, and no hook runs; only the leaf counts. The rest of the
      // sanity checks (level, alignment) send it the long way, to warn.
      if (!spte::is_shadow_present(old_spte) && spte::is_shadow_present(new_spte) && !sp->is_mirror() &&
          lvl(level) >= 1 && lvl(level) <= kRootMaxLevel && gfn_aligned(gfn, level)) [[likely]] {
        if (spte::is_last(new_spte, level)) kvm_update_page_stats(level, 1);
        return 0;
      }
      return handle_changed_spte_inner(sp, gfn, old_spte, new_spte, level, shared);
    }
    if (old_spte == new_spte) return handle_changed_spte_inner(sp, gfn, old_spte, new_spte, level, shared);
    return handle_changed_spte_observed(sp, gfn, old_spte, new_spte, level, shared);
  }
  void handle_changed_spte(MmuPage* sp, Gfn gfn, uint64_t old_spte, uint64_t new_spte,
                           PgLevel level, bool shared) {
    if (__handle_changed_spte(sp, gfn, old_spte, new_spte, level, shared) != 0) [[unlikely]]
      handle_changed_spte_failed(sp, gfn, old_spte, new_spte, level, shared);
  }
  void kvm_update_page_stats(PgLevel level, int64_t delta) {
    stats_.page_counts.add(static_cast<size_t>(lvl(level) - 1), static_cast<uint64_t>(delta));
  }
  // The change this thread is handling inside __handle_changed_spte() (the
  // innermost, for a child of a removed table), or null. Kept only while an
  // observer watches.
  static const SpteChange* current_change();

  // Visits every root (for checkers and tests); caller holds mmu_lock.
  template <class Fn>
  void for_each_root(Fn&& fn) {
    std::lock_guard g(pages_lock_);
    for (MmuPage* r : roots_) fn(r);
  }

 private:
  friend class TdpMmuTestPeer;
  friend struct TransitionDriveAccess;  // explore/drive.cpp: one row of the table, set by hand
  void handle_removed_pt(Pfn pt_pfn, bool shared);
  // The S-EPT side of mmu_topup_memory_caches(): the KVM cache of S-EPT
  // pages, or the module's, and the PAMT pages the hooks may lend.
  int mmu_topup_external_caches(VcpuMmuCaches& c);
  uint64_t kvm_tdp_mmu_write_spte(uint64_t* sptep, uint64_t old_spte, uint64_t new_spte, Gfn gfn, PgLevel level);
  uint64_t tdp_mmu_clear_spte_bits(uint64_t* sptep, uint64_t old_spte, uint64_t mask, Gfn gfn, PgLevel level);
  bool kvm_tdp_mmu_handle_gfn(Gfn start, Gfn end, bool test_only);
  // An exclusive store replaced `actual` where its caller read `expected`:
  // bits set meanwhile are lost, except Accessed cleared by lockless aging
  // (the page merely looks young again, which aging tolerates).
  static bool lost_update(uint64_t expected, uint64_t actual) {
    return actual != expected && actual != (expected & ~spte::kAccessed);
  }
  bool kvm_tdp_mmu_age_gfn_range_lockless(Gfn start, Gfn end, bool test_only);
  void track_possible_nx_huge_page(MmuPage* sp);    // pages_lock_ held
  void untrack_possible_nx_huge_page(MmuPage* sp);  // pages_lock_ held
  // disallowed_hugepage_adjust(): a table an exec fault left under the goal
  // level stays; the fault goes one level down instead of replacing it.
  void disallowed_hugepage_adjust(KvmPageFault& f, uint64_t spte, PgLevel cur_level) const;
  void zap_collapsible_sptes(Gfn start, Gfn end, int (*max_level)(void*, Gfn), void* ctx);
  int handle_changed_spte_inner(MmuPage* sp, Gfn gfn, uint64_t old_spte, uint64_t new_spte, PgLevel level,
                                bool shared);
  // __handle_changed_spte() while an observer watches: the change is
  // published for the duration of its handling and its result reported.
  int handle_changed_spte_observed(MmuPage* sp, Gfn gfn, uint64_t old_spte, uint64_t new_spte, PgLevel level,
                                   bool shared);
  // handle_changed_spte()'s KVM_BUG_ON() of a failed external update.
  void handle_changed_spte_failed(MmuPage* sp, Gfn gfn, uint64_t old_spte, uint64_t new_spte, PgLevel level,
                                  bool shared);
  bool tdp_mmu_iter_cond_resched(TdpIter& iter, bool flush, bool shared);
  bool tdp_mmu_zap_leafs(MmuPage* root, Gfn start, Gfn end, bool can_yield, bool flush);
  void tdp_mmu_zap_root(MmuPage* root, bool shared);
  void tdp_mmu_zap_root_level(MmuPage* root, bool shared, PgLevel zap_level);
  MmuPage* tdp_mmu_alloc_sp(VcpuMmuCaches& c);
  void tdp_mmu_init_child_sp(MmuPage* child, const TdpIter& iter);
  int tdp_mmu_link_sp(TdpIter& iter, MmuPage* sp, bool shared);
  int tdp_mmu_split_huge_page(TdpIter& iter, MmuPage* sp, bool shared);
  int tdp_mmu_split_huge_pages_root(MmuPage* root, Gfn start, Gfn end, PgLevel target_level, bool shared);
  MmuPage* tdp_mmu_alloc_sp_for_split(bool mirror);
  Pfn alloc_external_spt(VcpuMmuCaches* c);
  RetPf tdp_mmu_map_handle_target_level(KvmPageFault& f, TdpIter& iter);
  void tdp_mmu_free_sp(MmuPage* sp, bool after_grace_period);
  static void tdp_mmu_free_sp_rcu_callback(sync::RcuHead* head);
  bool tdp_mmu_root_match(const MmuPage* root, unsigned types) const;

  PfnPool& pool_;
  BugTracker& kvm_;
  TdpMmuConfig cfg_;
  FaultInjector* inject_;
  ExternalOps* external_ = nullptr;
  std::unique_ptr<HookDesign> design_;
  MmuObserver* observer_ = nullptr;
  RemoteTlb* remote_tlb_ = nullptr;
  sync::MmuLock mmu_lock_;
  sync::TrackedMutex pages_lock_;  // tdp_mmu_pages_lock: guards roots_
  std::vector<MmuPage*> roots_;
  std::vector<MmuPage*> zombies_;
  std::vector<MmuPage*> possible_nx_huge_pages_;  // oldest first; pages_lock_  // freed too early (free_sp_external_live)
  TdpMmuStats stats_;
  unsigned resched_interval_ = 0;
  std::atomic<unsigned> resched_count_{0};
};

}  // namespace mirrormmu
