// SPDX-License-Identifier: MIT
// TdxModule's private state and the checks every SEAMCALL shares. Only the
// module_*.cpp files include this.
//
// Concurrency: the model's own lock (mu) is a big-reader lock. The per-page
// calls (runs_shared(): AUG, the guest's ACCEPT, VP.ENTER) take it shared
// and run side by side; every other call takes it exclusively. The module's
// own locks (TDR, S-EPT tree, TD epoch, per-entry, PAMT) are try-locks taken
// in the module's order: atomic, so calls side by side contend on them as on
// hardware, and held across a window in which mu is released so that
// another call can meet them and get BUSY. mu is recursive so an observer
// may use the introspection accessors from on_seamcall().
//
// Shared holds of the TD-wide locks (TDR, S-EPT tree, TD epoch) stay inside
// the call's LockSet while it holds mu: an exclusive attempt on any of them
// is made only with mu held exclusively, so no thread inside mu at the same
// time can be the one that should have seen them, and a thread outside mu
// learns of them when the holder releases mu, in a window, which counts
// them into the lock first. Nothing observable changes (a shared attempt
// still fails against an exclusive holder, which in turn counts every
// holder that is not inside mu with it), and a per-page call is spared a
// locked add and sub per TD-wide lock, half the locked instructions of a
// fault and of a teardown.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <optional>
#include <vector>

#include "base/percpu_counter.h"
#include "sync/br_lock.h"
#include "sync/sched.h"
#include "sync/tracked_mutex.h"
#include <type_traits>

#include "tdx/module.h"
#include "tdx/pamt.h"
#include "tdx/sept_tree.h"
#include "tdx/sharex_lock.h"

namespace mirrormmu::tdx {

// The status this thread is about to record was injected, not the leaf's:
// per thread, since the per-page calls run on several at once. Nothing switches
// between the injection and its record.
inline thread_local bool t_last_injected = false;

// A set of TD op-states a call is permitted in.
class OpStates {
 public:
  constexpr OpStates(std::initializer_list<OpState> states) {
    for (OpState s : states) bits_ |= bit(s);
  }
  constexpr bool has(OpState s) const { return (bits_ & bit(s)) != 0; }

 private:
  static constexpr uint8_t bit(OpState s) { return static_cast<uint8_t>(1u << static_cast<unsigned>(s)); }
  uint8_t bits_ = 0;
};

inline constexpr OpStates kBuildOrRun{OpState::Initialized, OpState::Runnable};
inline constexpr int kRootLevel = -1;  // "up to the root" in a MemCall level range

// The static part of a TDH.MEM call's prologue (§2.0 of the fact sheet).
struct MemCall {
  OpStates op_states;
  int min_level;
  int max_level;                       // kRootLevel: the root table's level
  std::optional<LockMode> tree_lock;   // PAGE.ADD relies on the exclusive TDR lock instead
  LockMode tdr_lock = LockMode::Shared;
};

// A vCPU's private translations, direct-mapped by GPA like one way of a
// second-level TLB: a new translation evicts the one in its set, as a CPU
// may drop any entry at any time (dropping only makes a later stale use
// less likely, never a false report). A flush bumps the generation instead
// of clearing the array: TRACK moves the epoch once per page at teardown.
class PrivateTlb {
 public:
  static constexpr size_t kEntries = 4096;  // a large second-level TLB's worth

  const uint64_t* find(uint64_t gpa4k) const {
    const Entry& e = set_of(gpa4k);
    return e.gen == gen_ && e.gpa == gpa4k ? &e.frame : nullptr;
  }
  void insert(uint64_t gpa4k, uint64_t frame) {
    Entry& e = set_of(gpa4k);
    e = Entry{gpa4k, frame, gen_};
  }
  void flush() { gen_++; }
  // The cached translation of a page in [gpa, gpa + n pages) to a frame in
  // [pfn, pfn + n), if any: a frame is mapped at one GPA of a TD at a time,
  // so a stale translation to it sits at the GPA it was mapped at.
  const uint64_t* find_frame_in(uint64_t gpa, uint64_t pfn, uint64_t n, uint64_t* at_gpa) const {
    const auto hit = [&](const Entry& e) {
      return e.gen == gen_ && e.gpa - gpa < (n << kPageShift) && e.frame - pfn < n;
    };
    // A range wider than the array may sit in any set: look at them all.
    for (uint64_t i = 0; i < std::min<uint64_t>(n, kEntries); i++) {
      const Entry& e = n < kEntries ? set_of(gpa + (i << kPageShift)) : (*sets_)[i];
      if (hit(e)) {
        *at_gpa = e.gpa;
        return &e.frame;
      }
    }
    return nullptr;
  }

 private:
  struct Entry {
    uint64_t gpa = 0, frame = 0, gen = 0;
  };
  Entry& set_of(uint64_t gpa4k) { return (*sets_)[(gpa4k >> kPageShift) % kEntries]; }
  const Entry& set_of(uint64_t gpa4k) const { return (*sets_)[(gpa4k >> kPageShift) % kEntries]; }
  // Generation 0 is never current, so a fresh array holds nothing.
  std::unique_ptr<std::array<Entry, kEntries>> sets_ = std::make_unique<std::array<Entry, kEntries>>();
  uint64_t gen_ = 1;
};

struct TdxModule::Impl {
  // Its own cache lines: a vCPU's thread writes in_guest and its TLB on
  // every entry, and another vCPU's lookups must not pull them across.
  struct alignas(64) Vcpu {
    Pfn tdvpr = kInvalidPfn;
    std::vector<Pfn> tdcx;
    bool initialized = false;  // VP.INIT done
    bool associated = true;    // until VP.FLUSH; VP.ADDCX/INIT/ENTER re-associate
    // Written by the vCPU's own thread (VP.ENTER, TD exit) and read by it
    // plainly; another thread reads it through guest().
    bool in_guest = false;
    bool guest() const { return std::atomic_ref<bool>(const_cast<bool&>(in_guest)).load(std::memory_order_acquire); }
    uint64_t epoch = 0;        // TD_EPOCH sampled at the last VP.ENTER
    // Private translations the CPU caches (4K gpa -> 4K frame), and the
    // TD_EPOCH they were cached in: VP.ENTER in a later one flushes them.
    PrivateTlb tlb;
    uint64_t tlb_epoch = 0;
    // Zero-step mitigation (td_exit_epf_stepping_log): hardware EPT
    // violations on private GPAs at one guest RIP. The first six only count;
    // from the seventh on the faulting GPAs are logged, and a non-empty log
    // arms the filter VP.ENTER runs. Only a change of RIP clears both.
    int possibly_epf_stepping = 0;
    uint64_t epf_rip = 0;  // the guest RIP those violations were at
    std::vector<uint64_t> last_epf_gpas;
  };
  static constexpr int kSteppingEpfThreshold = 6;  // STEPPING_EPF_THRESHOLD
  static constexpr size_t kEpfGpaListSize = 32;    // EPF_GPA_LIST_SIZE

  // A module lock was just taken: release the model's own mutex and let
  // another thread run, so a second SEAMCALL (or VP.ENTER, or the guest)
  // can meet the lock held and get BUSY, as on real hardware.
  //
  // On OS threads a window is worth opening only when another thread waits
  // for mu: otherwise nobody could come in and meet the lock.
  bool window_wanted() const { return sync::sched_steered() || mu.contended(); }
  // Only LockSet::window() opens one: it must count its shared holds in.
  void open_window(const void* lock) {
    const bool exclusive = mu.held_exclusive_by_me();
    exclusive ? mu.unlock() : mu.unlock_shared();
    sync::sched_point(sync::PointKind::ModuleTryLock, lock);
    exclusive ? mu.lock() : mu.lock_shared();
  }

  // The calls a TD makes per page, PAGE.AUG on a fault, the guest's
  // PAGE.ACCEPT and VP.ENTER, run under the model's lock shared, side by
  // side as on several real CPUs: what they change is their own S-EPT entry
  // (under the entry's lock bit), their own frames' PAMT bytes and cache
  // bits, their own vCPU's state, and atomics (the epoch's vCPU counts, a
  // vCPU's in_guest, which others read). Every other call takes the lock
  // exclusively: a SEPT.ADD adds to the table map the others read, TRACK
  // moves the epoch, and the rest are rare next to the faults.
  static constexpr bool runs_shared(Leaf leaf) {
    return leaf == Leaf::MEM_PAGE_AUG || leaf == Leaf::TDG_MEM_PAGE_ACCEPT || leaf == Leaf::VP_ENTER;
  }
  class CallLock {
   public:
    CallLock(sync::Tracked<sync::BrLock>& l, bool shared) : l_(l), shared_(shared) {
      shared_ ? l_.lock_shared() : l_.lock();
    }
    ~CallLock() { shared_ ? l_.unlock_shared() : l_.unlock(); }
    // For a call that found it needs mu exclusively after all; it changed
    // nothing yet, and runs again from the start.
    void make_exclusive() {
      if (!shared_) return;
      l_.unlock_shared();
      l_.lock();
      shared_ = false;
    }
    CallLock(const CallLock&) = delete;
    CallLock& operator=(const CallLock&) = delete;

   private:
    sync::Tracked<sync::BrLock>& l_;
    bool shared_;
  };

  // Locks one call holds; all are released when the call returns.
  class LockSet {
   public:
    explicit LockSet(Impl& impl) : impl_(impl) {}
    ~LockSet();
    LockSet(const LockSet&) = delete;
    LockSet& operator=(const LockSet&) = delete;

    Status tdr(LockMode mode, Operand busy_operand);
    Status sept_tree(LockMode mode);
    Status epoch(LockMode mode);
    // VP.ENTER drops the epoch lock as soon as the vCPU is counted in.
    void release_epoch();
    Status entry(sept::Word& entry);
    // Dynamic PAMT: the PAMT entry of the 2M region holding `frame`. Without
    // DPAMT, or for a frame outside the PAMT (the caller's own checks refuse
    // it), takes nothing. A region this call already holds is not retaken.
    Status pamt_region(Pfn frame, LockMode mode, Operand busy_operand);

   private:
    enum TdLock : uint8_t { kTdr = 1, kTree = 2, kEpoch = 4 };
    // Takes a TD-wide lock (see "Shared holds" above): BUSY as `busy`.
    Status take(ShardedSharexLock& l, LockMode mode, TdLock which, Status busy);
    void release(ShardedSharexLock& l, std::optional<LockMode>& slot, TdLock which);
    // Records a module lock just taken and opens its contention window.
    Status hold(Status s, std::optional<LockMode>& slot, LockMode mode, const void* lock);
    // Opens a contention window at `lock`, the TD-wide shared holds counted
    // into their locks first.
    void window(const void* lock);

    struct RegionHold {
      uint64_t region = 0;
      LockMode mode = LockMode::Shared;
    };
    Impl& impl_;
    std::optional<LockMode> tdr_, tree_, epoch_;
    uint8_t implicit_ = 0;  // TdLocks held shared but not yet counted in
    sept::Word* entry_ = nullptr;
    std::array<RegionHold, 2> regions_{};  // DEMOTE holds two: new S-EPT page, split range
    size_t nregions_ = 0;
  };

  Impl(TdxModule& self, uint64_t npages, int sept_levels)
      : m(self), tree(sept_levels), pamt(npages), pamt_region_locks((npages >> kLevelBits) + 1) {}

  // Runs one SEAMCALL: scheduling point, module lock, body, accounting.
  template <class Fn>
  auto call(Leaf leaf, uint64_t gpa, int tdx_level, Fn&& body) {
    // Outside the mutex: a deterministic scheduler may switch threads here,
    // and the thread it switches to may be about to enter the module.
    sync::sched_point(sync::PointKind::Seamcall, &m);
    CallLock lock(mu, runs_shared(leaf));
    using R = decltype(body());
    if constexpr (!std::is_same_v<R, AcceptResult>) {
      if (m.inject_ != nullptr) [[unlikely]] {
        Status s = m.inject_->seamcall_rule(static_cast<uint32_t>(leaf));
        // An explorer may pick any status but BUSY (a kind of its own).
        if (!s) {
          const auto& errors = injectable_errors(leaf);
          if (const uint32_t i = m.inject_->seamcall_error(static_cast<uint32_t>(errors.size()) + 1)) s = errors[i - 1];
        }
        if (s) {
          m.injected_calls_.fetch_add(1, std::memory_order_relaxed);
          t_last_injected = true;
          record(leaf, gpa, tdx_level, s);
          return R{s};
        }
      }
    }
    auto result = body();
    if constexpr (std::is_same_v<R, Status>) {
      if (result == kRerunExclusive) [[unlikely]] {
        lock.make_exclusive();
        result = body();
      }
    }
    record(leaf, gpa, tdx_level, status_of(result));
    return result;
  }
  // Returned, before it changes anything, by a call that runs shared but
  // must lock a TD-wide lock exclusively this time (VP.ENTER's zero-step
  // filter): call() runs it again holding mu exclusively. Not a TDX status.
  static constexpr Status kRerunExclusive = ~Status{0};
  static Status status_of(Status s) { return s; }
  static Status status_of(const Ret& r) { return r.status; }
  static Status status_of(const AcceptResult& r) { return r.status; }
  void record(Leaf leaf, uint64_t gpa, int tdx_level, Status s);
  // Fault injection at the entry of a host S-EPT/memory call. `contended`:
  // whether anything can really contend with this call in KVM's use (not
  // RECLAIM or WBINVD, which run on pages nothing else touches).
  Status injected(Operand busy_operand, bool contended = true);
  // is_interrupt_pending_host_side(), asked by the interruptible leaves
  // before they commit anything.
  bool host_interrupt_pending();

  // ---- module try-locks ----------------------------------------------------
  Status try_lock_entry(sept::Word& entry, bool alone);
  // The classic bug of the shared holds kept inside a LockSet, planted only
  // by the test that shows a window catching it: a window that releases mu
  // without counting them into their locks.
  bool flaw_window_hides_holds = false;

  // ---- shared checks ---------------------------------------------------------
  Status check_tdr(Operand op) const;
  // §2.0 steps 2-4: TDR operand and lock, lifecycle, TDCS, op-state.
  Status td_prologue(LockSet& locks, Operand tdr_operand, LockMode tdr_mode, OpStates ok);
  Status check_page_info(uint64_t gpa, int level, int min_level, int max_level) const;
  // Steps 2-8 for a call on the entry at (gpa, level); fills `w` on success.
  Ret mem_prologue(LockSet& locks, const MemCall& c, uint64_t gpa, int level, SeptWalk& w);
  // A frame (or a 512^size_level run) the host hands to the module.
  Status check_new_page(Pfn base, int size_level, Operand op) const;
  bool tracking_required() const { return m.op_state_ == OpState::Runnable; }
  bool tracked(Pfn blocked_object) const;
  // While tracking is required (the TD runs), the entry `w` ended at must be
  // blocked and the block tracked before REMOVE, SEPT.REMOVE, DEMOTE or
  // PROMOTE may change it. Returns the failure, or success.
  Ret require_blocked_and_tracked(const SeptWalk& w) const;
  // Lock-free (see vcpu_index): every guest access and per-page SEAMCALL asks.
  Vcpu* find_vcpu(int vcpu) const {
    const VcpuIndex* ix = vcpu_index.load(std::memory_order_acquire);
    if (ix == nullptr || vcpu < 0 || static_cast<size_t>(vcpu) >= ix->size) return nullptr;
    return ix->slot[static_cast<size_t>(vcpu)].load(std::memory_order_acquire);
  }
  // Status with RCX/RDX extended info describing the entry `w` ended at.
  static Ret ext(Status s, const SeptWalk& w);

  // ---- Dynamic PAMT checks (module_pamt.cpp) ------------------------------------
  bool dpamt() const { return m.cfg_.dynamic_pamt; }
  // `page` is about to get a 4K PAMT entry: its region must have a pair.
  Status require_pamt_pair(Pfn page, Operand op) const;
  // RCX of PAMT.ADD/REMOVE: a 2M-aligned region inside the PAMT.
  Status check_pamt_region(Pfn region_base) const;
  // A page the host lends as half of a pair: valid, inside the PAMT, free.
  Status check_pair_page(Pfn page, Operand op) const;
  // DEMOTE 2M -> 4K: the split range's pair, present or supplied. Sets
  // `install` when the supplied pages must be installed by the commit.
  Status demote_pamt_pair(Pfn range, Pfn new_sept_page, Pfn page0, Pfn page1, bool& install) const;

  // ---- call bodies (one per leaf) --------------------------------------------
  Status mng_create(Pfn tdr, uint16_t hkid);
  Status mng_key_config();
  Status mng_addcx(Pfn tdcx);
  Status mng_init();
  Status vp_create(int vcpu, Pfn tdvpr);
  Status vp_addcx(int vcpu, Pfn tdcx);
  Status vp_init(int vcpu);
  Status mr_extend(uint64_t gpa);
  Status mr_finalize();

  Ret sept_add(uint64_t gpa, int level, Pfn page);
  Ret page_add(uint64_t gpa, int level, Pfn hpa, Pfn source);
  Ret page_aug(uint64_t gpa, int level, Pfn hpa);
  Ret range_block(uint64_t gpa, int level);
  Ret range_unblock(uint64_t gpa, int level);
  Ret page_remove(uint64_t gpa, int level);
  Ret sept_remove(uint64_t gpa, int level);
  Ret sept_rd(uint64_t gpa, int level);
  Ret page_demote(uint64_t gpa, int level, Pfn new_sept_page, Pfn pamt_page0, Pfn pamt_page1);
  Ret page_promote(uint64_t gpa, int level);

  Status mem_track();
  // Frames [pfn, pfn + n), mapped at `gpa`, leave the TD (`leaf` names the
  // SEAMCALL): a vCPU that may still use a cached translation to one is a
  // violation.
  void tlb_check_gone(uint64_t gpa, Pfn pfn, uint64_t n, const char* leaf);
  std::string tlb_violation;
  Status vp_enter(int vcpu, uint64_t* exit_gpa);
  void td_exit(int vcpu);
  AcceptResult page_accept(int vcpu, uint64_t gpa, int level);

  Status page_reclaim(Pfn page);
  Status page_wbinvd(Pfn page, uint16_t hkid);
  Status vp_flush(int vcpu);
  Status mng_vpflushdone();
  Status cache_wb(bool resume);
  Status mng_key_freeid();
  Status pamt_add(Pfn region_base, Pfn page0, Pfn page1);
  Ret pamt_remove(Pfn region_base, Pfn* page0_out, Pfn* page1_out);

  // ---- state -------------------------------------------------------------------
  TdxModule& m;
  // Tracked: every step that enters the module names its state. Biased to
  // its first thread: a run on one thread (--inline, the explorer) takes it
  // some ten times a page, and the locked instructions of an ordinary
  // acquisition and release were a fifth of such a run.
  mutable sync::Tracked<sync::BrLock> mu{sync::BrLock::Readers::Symmetric, sync::BrLock::Bias::FirstThread};
  SeptTree tree;
  Pamt pamt;
  // Taken shared by every per-page call: sharded, so that vCPUs side by
  // side do not pass their words between caches.
  ShardedSharexLock tdr_lock, sept_tree_lock, epoch_lock;
  // DPAMT: one lock per 2M region's PAMT entry.
  std::vector<SharexLock> pamt_region_locks;
  std::vector<Pfn> tdcs;                   // tdcs[0] holds the S-EPT root
  std::map<int, std::unique_ptr<Vcpu>> vcpus;
  // vCPUs by id, for find_vcpu() without a tree walk and without mu: a
  // vCPU's own thread asks about it on every guest access. VP.CREATE (mu
  // exclusive) grows it by publishing a larger copy; the copies it replaced
  // stay until the module goes, so a reader still holding one reads memory
  // that lives.
  struct VcpuIndex {
    size_t size = 0;
    std::unique_ptr<std::atomic<Vcpu*>[]> slot;
  };
  std::atomic<const VcpuIndex*> vcpu_index{nullptr};
  std::vector<std::unique_ptr<VcpuIndex>> vcpu_indexes;
  void index_vcpu(int vcpu, Vcpu* v);
  // vCPUs in guest, by entry-epoch parity: per CPU, since every VP.ENTER
  // and TD exit changes them and only TRACK and the BEPOCH check read them.
  std::array<PercpuCounter<int64_t>, 2> epoch_refcount;
  bool fatal = false;                      // TDR.FATAL: TDH.MEM.* and VP.ENTER refuse
  bool wbcache_done = false;               // CACHE.WB ran since the TD became BLOCKED
  uint64_t mrtd_pages = 0;                 // PAGE.ADDs folded into MRTD
  uint64_t mrtd_chunks = 0;                // MR.EXTENDs folded into MRTD
};

}  // namespace mirrormmu::tdx
