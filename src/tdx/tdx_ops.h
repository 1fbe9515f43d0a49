// SPDX-License-Identifier: MIT
// The KVM side of TDX (tdx.c): the external hooks as SEAMCALL sequences, the
// BUSY handling under the exclusive lock, TDX_BUG_ON on everything else, and
// the TD's lifecycle (create, build, finalize, HKID release, reclaim).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "base/bug.h"
#include "mem/pfn_pool.h"
#include "mmu/external_ops.h"
#include "sync/mmu_lock.h"
#include "sync/tracked_mutex.h"
#include "tdx/module.h"

namespace mirrormmu::tdx {

// enum kvm_tdx_state / td_state
enum class TdState : uint8_t { Uninitialized, Initialized, Runnable };
const char* td_state_name(TdState s);

// Forces every vCPU out of guest mode and waits for it
// (kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE)). The VM layer
// implements it; it knows where its vCPUs are.
class VcpuKicker {
 public:
  virtual ~VcpuKicker() = default;
  virtual void kick_all_vcpus_out() = 0;
};

struct TdxOpsStats {
  uint64_t kicks = 0;
  uint64_t no_vcpus_retries = 0;  // tdh_do_no_vcpus() second tries
  uint64_t page_resets = 0;       // tdx_quirk_reset_page()
  uint64_t leaked_pages = 0;      // failed reclaims, leaked on purpose
  uint64_t demotes = 0;           // huge private leaves split (PAGE.DEMOTE)
  uint64_t pool_handouts = 0;     // S-EPT pages handed out of the TDX-side pool
  uint64_t demote_pamt_pairs = 0; // DPAMT pairs lent to PAGE.DEMOTE for the split range
};

// ---- Dynamic PAMT (tdx_pamt.cpp) ---------------------------------------------

// A tdx_pamt_cache: pages (owner Pamt) allocated outside mmu_lock, so that a
// hook running under it can lend the module a region's page pair.
class PamtCache {
 public:
  explicit PamtCache(PfnPool& pool) : pool_(pool) {}
  ~PamtCache() { free_all(); }
  PamtCache(const PamtCache&) = delete;
  PamtCache& operator=(const PamtCache&) = delete;

  // Fills up to `min` pages; -ENOMEM when the pool runs dry (what was
  // allocated stays for the next try).
  int topup(size_t min);
  Pfn take();               // kInvalidPfn when empty
  void give_back(Pfn page);
  void free_all();
  size_t size() const { return n_.load(std::memory_order_relaxed); }

 private:
  PfnPool& pool_;
  std::vector<Pfn> pages_;
  // pages_.size(), readable without the owner's lock (the top-up fast path).
  std::atomic<size_t> n_{0};
};

// The global pamt_lock, a spinlock held across PAMT.ADD/REMOVE. A real
// mutex would deadlock the deterministic engine (one virtual thread runs at
// a time and a SEAMCALL is a scheduling point), so waiting goes through
// wait_event, as with mmu_lock.
class PamtLock {
 public:
  void lock();
  void unlock();

 private:
  std::atomic<bool> held_{false};
};

class TdxOps final : public ExternalOps {
 public:
  TdxOps(TdxModule& module, PfnPool& pool, BugTracker& kvm, sync::MmuLock& mmu_lock);

  void set_kicker(VcpuKicker* k) { kicker_ = k; }
  void select_layout(ExternalLayout l) override { layout_ = l; }

  // ---- kvm_x86_ops hooks --------------------------------------------------
  int link_external_spt(Gfn gfn, PgLevel level, Pfn external_spt) override;
  int set_external_spte(Gfn gfn, PgLevel level, uint64_t mirror_spte) override;
  void remove_external_spte(Gfn gfn, PgLevel level, uint64_t mirror_spte) override;
  int free_external_spt(Gfn gfn, PgLevel level, Pfn external_spt) override;
  // The hooks of the other designs (tdx_designs.cpp).
  int split_external_spt(Gfn gfn, PgLevel level, uint64_t old_spte, Pfn new_external_spt) override;
  int set_external_spte(Gfn gfn, uint64_t old_spte, uint64_t new_spte, PgLevel level) override;
  void free_external_spt(MmuPage& sp) override;
  void reclaim_external_spt(Gfn gfn, MmuPage& sp) override;
  int topup_external_fault_cache(int vcpu, int min) override;
  Pfn alloc_external_fault_cache(int vcpu) override;
  int topup_external_cache(int vcpu, int min_nr_spts) override;
  // Pages still in the TDX-side pool go back to the host (VM teardown).
  void free_external_pool();

  // ---- Dynamic PAMT: a reference per 4K page the module takes -------------
  // No-ops unless the module runs DPAMT and level is 4K. get before the
  // SEAMCALL that gives `page` a 4K PAMT entry (PAMT.ADD on the region's
  // 0 -> 1, with two pages from `cache`); put once the module let go of it
  // (REMOVE, RECLAIM) or the SEAMCALL failed (PAMT.REMOVE on 1 -> 0).
  int tdx_pamt_get(Pfn page, PgLevel level, PamtCache& cache);
  void tdx_pamt_put(Pfn page, PgLevel level);
  uint32_t pamt_refcount(Pfn frame);  // of frame's 2M region (tests)

  // ---- TD lifecycle ---------------------------------------------------------
  int tdx_td_init(uint16_t hkid);               // MNG.CREATE, KEY.CONFIG, ADDCX..., MNG.INIT
  int tdx_vcpu_create(int vcpu);                // VP.CREATE, VP.ADDCX..., VP.INIT
  // KVM_TDX_INIT_MEM_REGION, one page: the caller maps gfn through the MMU
  // (which lands in set_external_spte -> PAGE.ADD) between begin and end.
  int tdx_init_mem_region_begin(Pfn source);
  int tdx_init_mem_region_end(Gfn gfn);         // MR.EXTEND over the page
  int tdx_td_finalize();                        // MR.FINALIZE, TD runnable
  void tdx_mmu_release_hkid(const std::vector<int>& vcpus);
  // kvm_destroy_vcpus() -> tdx_vcpu_free(): the vCPU's PAMT cache, then its
  // TDCX and TDVPR pages (reclaimed only once the HKID is gone).
  void tdx_vcpu_free(int vcpu);
  // vm_destroy -> tdx_reclaim_td_control_pages(): the TDCS pages, then the
  // TDR, after kvm_mmu_uninit_vm() reclaimed the S-EPT pages.
  void tdx_vm_destroy();

  // ---- vCPU run -------------------------------------------------------------
  // tdx_vcpu_run() up to TDH.VP.ENTER, and how tdx_handle_exit() sees the
  // result when the guest was never entered.
  struct VcpuEntry {
    enum Kind : uint8_t {
      Entered,
      Refused,       // wait_for_sept_zap, BUSY: leave and re-enter
      NotRunnable,   // the TD is not runnable (not finalized, VM bugged)
      EptViolation,  // zero-step filter: handle an EPT violation at `gpa`
      Error,         // an error status (TD_FATAL): KVM_EXIT_INTERNAL_ERROR
    } kind;
    uint64_t gpa = 0;
    Status status = TDX_SUCCESS;  // what VP.ENTER returned (success when it was not called)
  };
  // The no-wbinvd what-if: REMOVE without the WBINVD that must follow it.
  void set_skip_wbinvd(bool on) { skip_wbinvd_ = on; }
  void set_skip_kick_after_track(bool on) { skip_kick_after_track_ = on; }
  // The split-pool-topup-apart what-if: the VM's S-EPT pool is topped up
  // under one hold of its lock and taken from under another.
  void set_split_pool_topup_apart(bool on) { split_pool_topup_apart_ = on; }
  bool split_pool_topup_apart() const { return split_pool_topup_apart_; }
  // Allocation failures the run injects (PAMT pair top-ups).
  void set_injector(FaultInjector* inject) { inject_ = inject; }
  VcpuEntry tdx_vcpu_enter(int vcpu);
  void tdx_vcpu_exit(int vcpu);
  // Called outside guest mode after an entry was refused for a zap.
  void wait_for_zap_done();

  TdState td_state() const { return state_.load(std::memory_order_acquire); }
  // kvm->arch.pre_fault_allowed: set by KVM_TDX_FINALIZE_VM.
  bool pre_fault_allowed() const { return pre_fault_allowed_.load(std::memory_order_acquire); }
  bool hkid_assigned() const { return module_.hkid_assigned(); }
  bool wait_for_sept_zap() const { return wait_for_sept_zap_.load(std::memory_order_acquire); }
  const TdxOpsStats& stats() const { return stats_; }
  TdxModule& module() { return module_; }

 private:
  // tdh_do_no_vcpus(): try once; on BUSY keep vCPUs out, kick them, retry
  // once. A template, not a std::function: the captures of a teardown's
  // BLOCK and REMOVE outgrew its inline buffer, a heap allocation per call.
  template <class Fn>
  Ret tdh_do_no_vcpus(Fn&& fn) {
    sync::assert_held_write(mmu_lock_, kvm_);
    Ret r = fn();
    if (is_busy(r.status)) [[unlikely]] {
      begin_no_vcpus();
      r = fn();
      end_no_vcpus();
    }
    return r;
  }
  void begin_no_vcpus();
  void end_no_vcpus();
  // TRACK (with one kick-and-retry on BUSY), then kick every vCPU out so
  // none still runs in the old epoch; the kick happens even when TRACK
  // failed (TDX_BUG_ON), and the REMOVE that follows then fails.
  void tdx_track();
  // BLOCK, TRACK + kick, REMOVE, WBINVD per 4K page, reset; the write lock.
  // Never -EBUSY: BUSY is retried once with vCPUs out, then TDX_BUG_ON.
  int tdx_sept_remove_private_spte(Gfn gfn, PgLevel level, uint64_t old_spte, PgLevel max_level);
  // ---- the merged layer (tdx_merged.cpp) --------------------------------------
  bool merged_layout() const;
  int tdx_sept_set_private_spte(Gfn gfn, uint64_t old_spte, uint64_t new_spte, PgLevel level);
  int tdx_sept_remove_leaf_spte(Gfn gfn, PgLevel level, uint64_t old_spte);
  int tdx_sept_map_nonleaf_spte(Gfn gfn, PgLevel level, uint64_t new_spte);
  int tdx_sept_map_leaf_spte(Gfn gfn, PgLevel level, uint64_t new_spte);
  void tdx_sept_free_private_spt(MmuPage& sp);
  PamtCache* tdx_running_pamt_cache();
  int tdx_reclaim_page(Pfn page);
  void tdx_quirk_reset_page(Pfn page);
  void kick();
  // tdx_sept_split_private_spte(): BLOCK, TRACK + kick, DEMOTE.
  int tdx_sept_split_private_spte(Gfn gfn, PgLevel level, uint64_t old_spte, Pfn new_sept_page);
  int tdx_sept_reclaim_private_spt(Pfn& external_spt);
  std::vector<Pfn>& pool_for(int vcpu);

  bool dpamt() const { return module_.config().dynamic_pamt; }
  int pamt_get_locked(Pfn page, PamtCache& cache);
  void pamt_put_locked(Pfn page);
  // Control pages (TDR, TDCS, TDVPR, TDCX): get outside mmu_lock.
  int tdx_pamt_get_control(Pfn page);
  // get, the SEAMCALL that hands `page` to the module, put if it failed.
  int tdx_add_control_page(Pfn page, const std::function<Status()>& seamcall);
  // RECLAIM (unless the module never took it), put, free; leak on failure.
  void tdx_free_control_page(Pfn page);
  // 2M -> 4K DEMOTE: the new S-EPT page's reference and, when the split
  // range has no pair, two pages for DEMOTE to install (R12/R13); taken
  // before the BLOCK so that running short leaves nothing blocked.
  struct DemotePamt {
    Pfn page0 = kInvalidPfn, page1 = kInvalidPfn;
  };
  int tdx_pamt_demote_begin(Pfn new_sept_page, Pfn range, DemotePamt& d, PamtCache& cache);
  void tdx_pamt_demote_end(Pfn new_sept_page, Pfn range, DemotePamt& d, bool ok, PamtCache& cache);
  // A vCPU's PAMT cache (vcpu >= 0) or the VM's, for callers outside any
  // vCPU (TD creation, conversions that split).
  PamtCache& pamt_cache_for(int vcpu);

  TdxModule& module_;
  PfnPool& pool_;
  BugTracker& kvm_;
  sync::MmuLock& mmu_lock_;
  VcpuKicker* kicker_ = nullptr;
  // Read by vCPU threads (entry, the leaf-map hook) while the VM thread may
  // change them: the smp_wmb/smp_rmb pairing of tdx_td_finalize().
  std::atomic<TdState> state_{TdState::Uninitialized};
  std::atomic<bool> pre_fault_allowed_{false};
  std::atomic<bool> wait_for_sept_zap_{false};
  bool skip_wbinvd_ = false;
  bool split_pool_topup_apart_ = false;
  bool skip_kick_after_track_ = false;
  FaultInjector* inject_ = nullptr;
  Pfn page_add_src_ = kInvalidPfn;
  Pfn tdr_ = kInvalidPfn;
  std::vector<Pfn> tdcs_;
  struct VcpuPages {
    int id;
    Pfn tdvpr;
    std::vector<Pfn> tdcx;
  };
  std::vector<VcpuPages> vcpu_pages_;
  // The TDX-side S-EPT page pool: one list per vCPU (faults) and one for the
  // VM (splits). A vCPU only touches its own list; splits may run on
  // several threads with mmu_lock dropped, hence the lock.
  sync::TrackedMutex pool_mu_;
  std::vector<std::vector<Pfn>> vcpu_pool_;
  std::vector<Pfn> vm_pool_;
  ExternalLayout layout_ = ExternalLayout::FourHooks;
  // DPAMT: a PAMT page cache per vCPU (struct vcpu_tdx's pamt_cache), found
  // by the hooks through kvm_get_running_vcpu(), and one for the VM's own
  // callers. pamt_lock_ guards the caches and the refcounts.
  PamtLock pamt_lock_;
  std::vector<std::unique_ptr<PamtCache>> vcpu_pamt_caches_;
  PamtCache vm_pamt_cache_;
  std::unordered_map<uint64_t, uint32_t> pamt_refs_;  // by 2M region (pfn >> 9)
  TdxOpsStats stats_;
};

inline int tdx_level(PgLevel l) { return lvl(l) - 1; }

}  // namespace mirrormmu::tdx
