// SPDX-License-Identifier: MIT
// The TDX module, as far as KVM's S-EPT management can observe it.
//
// TdxModule owns one TD: its TDR/TDCS, its Secure EPT (entry states per the
// module's state machine), the PAMT page types of every host frame, TLB
// tracking epochs and the per-vCPU "in guest" accounting. Each host call
// checks its preconditions in the module's order and returns the module's
// status code; a call that fails changes nothing. Operands are raw, as in the
// registers: a GPA and a zero-based TDX level (KVM's pg_level - 1).
//
// The model never trusts the caller: it enforces the walk rule, the state
// gate, tracking (BLOCK -> TRACK -> all vCPUs out -> REMOVE), "all children
// FREE before SEPT.REMOVE", HKID lifecycle for RECLAIM, and PAMT ownership.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "base/inject.h"
#include "base/thread_counters.h"
#include "base/types.h"
#include "mem/pfn_pool.h"
#include "tdx/status.h"

namespace mirrormmu::tdx {

// Public S-EPT entry states (RDX[15:8] values in the comment).
enum class SeptState : uint8_t {
  Free,            // 0x00
  NlMapped,        // 0x84
  NlBlocked,       // 0x81
  Mapped,          // 0x04
  Blocked,         // 0x01
  Pending,         // 0x02
  PendingBlocked,  // 0x03
};
const char* sept_state_name(SeptState s);
uint8_t sept_state_public_code(SeptState s);
constexpr bool is_leaf_state(SeptState s) {
  return s == SeptState::Mapped || s == SeptState::Blocked || s == SeptState::Pending ||
         s == SeptState::PendingBlocked;
}
constexpr bool is_nonleaf_state(SeptState s) {
  return s == SeptState::NlMapped || s == SeptState::NlBlocked;
}
constexpr bool is_blocked_state(SeptState s) {
  return s == SeptState::NlBlocked || s == SeptState::Blocked || s == SeptState::PendingBlocked;
}

enum class OpState : uint8_t { Uninitialized, Initialized, Runnable };
// TDR lifecycle: HKID_ASSIGNED -> KEYS_CONFIGURED -> BLOCKED -> TEARDOWN.
enum class Lifecycle : uint8_t { None, HkidAssigned, KeysConfigured, Blocked, Teardown };
const char* op_state_name(OpState s);
const char* lifecycle_name(Lifecycle s);

// PAMT page type of a host frame. Pamt: one page of a Dynamic PAMT page pair,
// lent to the module by TDH.PHYMEM.PAMT.ADD (owned by no TD).
enum class PamtType : uint8_t { Nda, Reg, Tdr, Tdcx, Tdvpr, Ept, Pamt };
const char* pamt_type_name(PamtType t);

// A SEAMCALL's outputs that KVM looks at: RAX, and on walk/state errors the
// extended info (RCX = entry, RDX = level/state word).
struct Ret {
  Status status = TDX_SUCCESS;
  uint64_t entry = 0;
  uint64_t level_state = 0;
  bool ok() const { return status == TDX_SUCCESS; }
};

// Outcome of the guest's TDG.MEM.PAGE.ACCEPT.
struct AcceptResult {
  enum class Outcome : uint8_t {
    Accepted,        // PENDING -> MAPPED
    Status,          // returned to the guest with `status` (ALREADY_ACCEPTED, SIZE_MISMATCH, BUSY)
    EptViolation,    // TD exit to the host: AUG (FREE) or DEMOTE (larger leaf) needed
  };
  Outcome outcome = Outcome::Accepted;
  Status status = TDX_SUCCESS;
  int walk_level = 0;              // TDX level where the walk stopped (EPT violation)
  SeptState state = SeptState::Free;
};

// Observers see every call with its final status (the checker and the trace).
class SeamcallObserver {
 public:
  virtual ~SeamcallObserver() = default;
  virtual void on_seamcall(Leaf leaf, uint64_t gpa, int tdx_level, Status status) = 0;
  // The status was injected (an engine's BUSY, a --inject rule), not what
  // the module would have returned; by default just a call like any other.
  virtual void on_injected_seamcall(Leaf leaf, uint64_t gpa, int tdx_level, Status status) {
    on_seamcall(leaf, gpa, tdx_level, status);
  }
};

struct ModuleConfig {
  int sept_levels = 4;           // S-EPT page-walk length: 4 or 5
  int tdcs_pages = 4;            // TDCS pages MNG.ADDCX must add before MNG.INIT
  int tdvpx_pages = 2;           // TDCX pages per vCPU before VP.INIT
  // Dynamic PAMT (issue 4): a 4K TD page needs its 2M region's 4K-PAMT page
  // pair installed first (TDH.PHYMEM.PAMT.ADD); see module_pamt.cpp.
  bool dynamic_pamt = false;
  // TDX_FEATURES0.ENHANCED_DEMOTE_INTERRUPTIBILITY (bit 51), first
  // enumerated by module 1.5.28: DEMOTE of a TD without L2 VMs is no longer
  // interrupted by a pending host interrupt. PROMOTE still is.
  bool enhanced_demote_interruptibility = true;
  // A what-if of TLB tracking without counting vCPUs: TRACK advances the
  // epoch even while vCPUs of the previous one are in the guest, and a
  // block counts as tracked once any TRACK followed it. Only KVM's kick
  // after TRACK then stands between a REMOVE and a vCPU's stale TLB.
  bool lax_tlb_tracking = false;
};

class TdxModule {
 public:
  TdxModule(PfnPool& pool, ModuleConfig cfg, FaultInjector* inject = nullptr);
  ~TdxModule();
  TdxModule(const TdxModule&) = delete;
  TdxModule& operator=(const TdxModule&) = delete;

  // ---- TD build -------------------------------------------------------
  Status tdh_mng_create(Pfn tdr, uint16_t hkid);  // lifecycle -> HKID_ASSIGNED
  Status tdh_mng_key_config();                    // -> KEYS_CONFIGURED
  Status tdh_mng_addcx(Pfn tdcx);                 // the first TDCS page is the S-EPT root
  Status tdh_mng_init();                          // op-state -> INITIALIZED, TD_EPOCH = 1
  Status tdh_vp_create(int vcpu, Pfn tdvpr);
  Status tdh_vp_addcx(int vcpu, Pfn tdcx);
  Status tdh_vp_init(int vcpu);
  Status tdh_mr_extend(uint64_t gpa);   // 256-byte chunk at gpa; MAPPED leaf, INITIALIZED
  Status tdh_mr_finalize();             // op-state -> RUNNABLE

  // ---- S-EPT management (host) ----------------------------------------
  Ret tdh_mem_sept_add(uint64_t gpa, int tdx_level, Pfn new_sept_page);
  Ret tdh_mem_page_add(uint64_t gpa, int tdx_level, Pfn hpa, Pfn source);
  Ret tdh_mem_page_aug(uint64_t gpa, int tdx_level, Pfn hpa);
  Ret tdh_mem_range_block(uint64_t gpa, int tdx_level);
  Ret tdh_mem_range_unblock(uint64_t gpa, int tdx_level);
  Status tdh_mem_track();
  Ret tdh_mem_page_remove(uint64_t gpa, int tdx_level);
  Ret tdh_mem_sept_remove(uint64_t gpa, int tdx_level);
  Ret tdh_mem_sept_rd(uint64_t gpa, int tdx_level);
  // Split a 2M (1G) leaf into 512 4K (2M) leaves in a new S-EPT page; the
  // reverse, freeing the S-EPT page. While the TD runs both need the entry
  // blocked and tracked. With Dynamic PAMT a 2M -> 4K split needs a page pair
  // for the split range: one already installed, or pamt_page0/1 (R12/R13),
  // which DEMOTE then installs. PROMOTE leaves the pair in place.
  Ret tdh_mem_page_demote(uint64_t gpa, int tdx_level, Pfn new_sept_page, Pfn pamt_page0 = kInvalidPfn,
                          Pfn pamt_page1 = kInvalidPfn);
  Ret tdh_mem_page_promote(uint64_t gpa, int tdx_level);

  // ---- Physical memory, teardown --------------------------------------
  Status tdh_phymem_page_reclaim(Pfn page);
  Status tdh_phymem_page_wbinvd(Pfn page, uint16_t hkid);
  Status tdh_vp_flush(int vcpu);
  Status tdh_mng_vpflushdone();         // -> BLOCKED
  Status tdh_phymem_cache_wb(bool resume);
  Status tdh_mng_key_freeid();          // -> TEARDOWN

  // ---- Dynamic PAMT (TDX_OPERAND_INVALID when it is off) --------------
  // Lends page0/page1 to the 2M region at region_base_2m as its 4K-PAMT page pair.
  Status tdh_phymem_pamt_add(Pfn region_base_2m, Pfn page0, Pfn page1);
  // Takes the pair back once no frame in the region holds a 4K TD page; the
  // two pages are returned through the out-pointers for the host to free.
  Ret tdh_phymem_pamt_remove(Pfn region_base_2m, Pfn* page0_out, Pfn* page1_out);

  // ---- vCPU side --------------------------------------------------------
  // TDH.VP.ENTER: takes a reference on the current TD epoch, and holds the
  // TDR shared, until td_exit. With zero-step mitigation armed it may
  // instead return 0x30 (an EPT-violation exit) with the GPA in *exit_gpa
  // (R8), without entering the guest.
  Status tdh_vp_enter(int vcpu, uint64_t* exit_gpa = nullptr);
  void td_exit(int vcpu);
  bool vcpu_in_guest(int vcpu) const;
  // A hardware EPT-violation exit on a private GPA (not an ACCEPT exit) at
  // guest instruction `rip`: feeds zero-step mitigation.
  void vcpu_ept_violation(int vcpu, uint64_t gpa, uint64_t rip);
  // The guest retired an instruction (RIP moved): zero-step mitigation disarms.
  void vcpu_progress(int vcpu);
  bool zero_step_active(int vcpu) const;
  // TDR.FATAL, as an asynchronous TD exit with a fatal status (a machine
  // check in the guest) sets it.
  void set_td_fatal();
  // KVM guarantees that nothing (no vCPU, no TDCALL, no other host call)
  // can contend right now (the retry of tdh_do_no_vcpus): an execution
  // engine must not inject BUSY meanwhile.
  void set_host_exclusive(bool on) { host_exclusive_.store(on, std::memory_order_relaxed); }
  bool host_exclusive() const { return host_exclusive_.load(std::memory_order_relaxed); }
  // TDG.MEM.PAGE.ACCEPT by the guest running on `vcpu` (must be in guest).
  AcceptResult tdg_mem_page_accept(int vcpu, uint64_t gpa, int tdx_level);

  // ---- Introspection (checker, reports, tests) ------------------------
  struct EntryView {
    uint64_t gpa;    // base GPA the entry maps
    int tdx_level;   // level of the entry (0 = 4K leaf / PT entry)
    SeptState state;
    Pfn pfn;         // leaf: mapped page; non-leaf: child S-EPT page
  };
  // Every non-FREE entry, parents before children, in GPA order.
  void for_each_entry(const std::function<void(const EntryView&)>& fn) const;
  // Entries whose GPA lies in [start, end) at `lowest_level` or above.
  void for_each_entry_in(uint64_t start, uint64_t end, int lowest_level,
                         const std::function<void(const EntryView&)>& fn) const;
  // The same entries, appended to `out`: no call per entry.
  void entries_in(uint64_t start, uint64_t end, int lowest_level, std::vector<EntryView>& out) const;
  // Reads one entry by walking; nullopt-like: state Free and pfn invalid if
  // the walk stops above tdx_level.
  EntryView read_entry(uint64_t gpa, int tdx_level) const;
  // The leaf that maps gpa, at whatever level (state Free, pfn invalid if
  // none); pfn is the leaf's base frame.
  EntryView read_leaf(uint64_t gpa) const;

  // ---- the CPU on the private side ------------------------------------------
  // The guest on `vcpu` (in the guest) touches private `gpa`: a translation
  // its TLB caches, else the CPU's walk of the S-EPT, whose MAPPED leaf it
  // caches. Returns the state of the leaf it used (Free if none). Only
  // TDH.VP.ENTER in a new TD epoch empties that TLB: KVM cannot flush it.
  EntryView cpu_access(int vcpu, uint64_t gpa);
  // The first page the TD gave up (PAGE.REMOVE) while a vCPU could still
  // use a cached translation to it: "tlb_use_after_free: ...", or "".
  std::string tlb_violation() const;

  PamtType pamt_type(Pfn pfn) const;
  // The frames of [0, nframes) the PAMT records as anything but NDA, with
  // their types, under one acquisition of the module's lock: the end-of-life
  // checks look at every frame of the pool, and pamt_type() per frame took
  // the lock thousands of times per explored execution.
  std::vector<std::pair<Pfn, PamtType>> assigned_frames(uint64_t nframes) const;
  // Frames that may still hold cache lines written under the TD's HKID (the
  // guest's pages since they were added), until a WBINVD of the page or the
  // CACHE.WB of the HKID release. Model-side: the module itself cannot tell.
  // Those of frames [first, first + n), appended to *out in frame order: a
  // 64 GiB guest has 16M, so a caller walks the pool a slice at a time, and
  // a call per frame cost a tenth of a checked run with huge pages.
  void cache_dirty_in(uint64_t first, uint64_t n, std::vector<Pfn>* out) const;
  bool cache_dirty(Pfn pfn) const;
  // Dynamic PAMT: the 2M region holding `frame` has its page pair.
  bool pamt_pair_present(Pfn frame) const;
  uint64_t pamt_pairs() const;  // regions with a pair installed
  uint64_t chldcnt() const { return static_cast<uint64_t>(chldcnt_.load()); }
  uint64_t td_epoch() const { return td_epoch_.load(std::memory_order_relaxed); }
  OpState op_state() const { return op_state_.load(std::memory_order_relaxed); }
  Lifecycle lifecycle() const { return lifecycle_.load(std::memory_order_relaxed); }
  bool hkid_assigned() const;
  Pfn tdr() const { return tdr_; }
  uint16_t hkid() const { return hkid_; }
  const ModuleConfig& config() const { return cfg_; }
  // Calls that returned a --inject status instead of running.
  uint64_t injected_calls() const { return injected_calls_.load(std::memory_order_relaxed); }

  // Calls of a leaf and per status (status base | operand id), as counted
  // when this is called.
  struct LeafStats {
    uint64_t calls = 0;
    std::unordered_map<Status, uint64_t> by_status;
  };
  LeafStats stats(Leaf leaf) const;
  // The classic bug of keeping a call's shared holds of the TD-wide locks
  // to itself (module_impl.h, "Shared holds"): a contention window that
  // lets other calls in without counting them into the locks. Planted only
  // by tests/tdx/shared_holds_test.cpp.
  void plant_window_hides_holds();
  // The classic bug of the exclusive attempt a call makes alone (the model's
  // lock held exclusively: ShardedSharexLock::try_lock_exclusive_alone), on
  // the TDR, S-EPT tree and epoch locks: it takes the lock without summing
  // the shared holders. Planted only by tests/tdx/shared_holds_test.cpp.
  void plant_exclusive_ignores_shared();
  void set_observer(SeamcallObserver* o) { observer_ = o; }
  SeamcallObserver* observer() const { return observer_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;

  PfnPool& pool_;
  ModuleConfig cfg_;
  FaultInjector* inject_;
  SeamcallObserver* observer_ = nullptr;
  // Successful calls per leaf, counted per thread (PAGE.AUGs run on several
  // at once, and every call counts: neither a shared line nor a locked add
  // per call); the failures, rare, by status under a lock of their own.
  ThreadCounters<kLeafCount> successes_;
  mutable std::mutex failures_mu_;
  std::array<std::unordered_map<Status, uint64_t>, kLeafCount> failures_{};
  void count_call(Leaf leaf, Status s);
  Pfn tdr_ = kInvalidPfn;
  uint16_t hkid_ = 0;
  // Written under the module's lock; atomics so KVM-side threads may read
  // them (TD state checks) while another thread is inside a SEAMCALL.
  std::atomic<OpState> op_state_{OpState::Uninitialized};
  std::atomic<Lifecycle> lifecycle_{Lifecycle::None};
  // TDR.CHLDCNT: every AUG and REMOVE moves it, on several vCPU threads at
  // once, so in per-thread blocks with plain stores; summed where nothing
  // moves it (under the module's lock exclusively) or where an approximate
  // count will do.
  ThreadCounter<int64_t> chldcnt_;
  std::atomic<uint64_t> td_epoch_{0};
  std::atomic<bool> host_exclusive_{false};
  std::atomic<uint64_t> injected_calls_{0};
};

}  // namespace mirrormmu::tdx
