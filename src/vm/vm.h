// SPDX-License-Identifier: MIT
// A VM as a VMM sees it through KVM's API: memslots, memory attributes,
// vCPUs that fault on GPAs, dirty logging, and (for a TD) the TDX build and
// teardown. Every operation takes the mmu_lock mode the kernel takes and
// goes through the same TDP MMU, TDX glue and TDX module code.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/bug.h"
#include "base/inject.h"
#include "base/thread_counters.h"
#include "mem/backing.h"
#include "mem/pfn_pool.h"
#include "mmu/tdp_mmu.h"
#include "sync/sched.h"
#include "sync/tracked_mutex.h"
#include "tdx/module.h"
#include "tdx/tdx_ops.h"
#include "vm/guest_hw.h"

namespace mirrormmu {

enum class VmType : uint8_t { Normal, Td };

struct VmConfig {
  VmType type = VmType::Td;
  int ept_levels = 4;              // 4 or 5: root level and the TDX shared bit (47 / 51)
  uint64_t pool_pages = 1ull << 18; // host memory, in 4K frames (1 GiB)
  std::string design = kDefaultDesign;
  int nr_vcpus = 1;
  // Largest page backing shared memory: 4K (plain), 2M (THP), 1G (hugetlbfs).
  PgLevel shared_backing = PgLevel::k2M;
  uint16_t hkid = 1;
  // 2M private mappings once the TD is runnable (needs a design that can
  // split them; see vm_config_refusal()).
  bool huge_pages = false;
  // Split the huge pages of a slot when dirty logging starts (eager_page_split).
  bool eager_page_split = true;
  ExternalSptPolicy external_spt_policy = ExternalSptPolicy::KvmCache;
  SplitAlloc split_alloc = SplitAlloc::Prefilled;
  bool dynamic_pamt = false;
  // The TDX module enumerates ENHANCED_DEMOTE_INTERRUPTIBILITY (1.5.28 on).
  bool enhanced_demote_interruptibility = true;
  WhatIf what_if;
};

// Why a configuration cannot run, in one line; empty when it can.
std::string vm_config_refusal(const VmConfig& cfg);

inline constexpr uint32_t kMemLogDirtyPages = 1u << 0;  // KVM_MEM_LOG_DIRTY_PAGES
inline constexpr uint32_t kMemGuestMemfd = 1u << 2;     // KVM_MEM_GUEST_MEMFD

struct Memslot {
  int id = 0;
  Gfn base_gfn{};
  uint64_t npages = 0;
  uint32_t flags = 0;
  // userspace_addr side: the slot's own, or host memory several slots map
  // (mmu_stress_test's aliases of one memfd).
  std::shared_ptr<Backing> shared;
  std::unique_ptr<Backing> gmem;     // guest_memfd side (TD private memory)
  // KVM_MEMORY_ATTRIBUTE_PRIVATE per gfn and the dirty bitmap: read and
  // written by vCPU and VM threads without a common lock (the attribute is
  // re-validated by the mmu_invalidate sequence), so accessed atomically.
  // The attribute is a bit per gfn: KVM keeps it in an xarray of ranges, and
  // a byte per gfn was 16 MiB of a 64 GiB TD.
  std::vector<uint64_t> private_bits;
  std::vector<uint64_t> dirty_bitmap;
  // KVM_LPAGE_GUEST_INHIBIT_FLAG per 2M block: the guest accepted at 4K in
  // it, so it is never mapped huge again.
  std::vector<uint8_t> guest_inhibit_2m;
  bool huge_inhibited(Gfn g) const {
    return std::atomic_ref<uint8_t>(const_cast<uint8_t&>(guest_inhibit_2m[(g - base_gfn) / 512])).load(std::memory_order_acquire);
  }
  void inhibit_huge(Gfn g) {
    std::atomic_ref<uint8_t>(guest_inhibit_2m[(g - base_gfn) / 512]).store(1, std::memory_order_release);
  }
  // KVM_MEMSLOT_INVALID: the slot is being deleted. Set before the SRCU
  // readers are waited for, so a fault that still finds it knows to back off.
  std::atomic<bool> invalid{false};
  bool is_invalid() const { return invalid.load(std::memory_order_acquire); }
  bool contains(Gfn g) const { return g >= base_gfn && g < base_gfn + npages; }
  // A slot's attributes and dirty bitmap are read and written between
  // scheduling points (a fault, a conversion, a log collection): the slot is
  // the object partial-order reduction orders them by.
  bool is_private(Gfn g) const {
    sync::sched_touch(this);
    return peek_private(g);
  }
  // The same without telling the scheduler (the checker's reads).
  bool peek_private(Gfn g) const {
    const uint64_t i = g - base_gfn;
    return (private_word(i / 64) >> (i % 64)) & 1;
  }
  // The aligned `level` range around g lies inside the slot and its
  // attributes are uniform: KVM_LPAGE_MIXED_FLAG clear, so a huge mapping
  // cannot straddle private and shared gfns (converting one 4K page would
  // leave the other side mapped).
  bool hugepage_uniform(Gfn g, PgLevel level) const {
    const Gfn base = gfn_round_for_level(g, level);
    if (base < base_gfn || base + pages_per_hpage(level) > base_gfn + npages) return false;
    sync::sched_touch(this);
    const uint64_t first = base - base_gfn, n = pages_per_hpage(level);
    if (first % 64 == 0 && n % 64 == 0) {  // a slot at an odd gfn has its blocks across words
      const uint64_t w0 = private_word(first / 64);
      if (w0 != 0 && w0 != ~uint64_t{0}) return false;
      for (uint64_t w = first / 64 + 1; w < (first + n) / 64; w++)
        if (private_word(w) != w0) return false;
      return true;
    }
    const bool a = peek_private(base);
    for (uint64_t i = 1; i < n; i++)
      if (peek_private(base + i) != a) return false;
    return true;
  }
  void set_private(Gfn g, bool p) {
    sync::sched_touch(this);
    const uint64_t i = g - base_gfn;
    std::atomic_ref<uint64_t> w(private_bits[i / 64]);
    if (p)
      w.fetch_or(1ull << (i % 64), std::memory_order_release);
    else
      w.fetch_and(~(1ull << (i % 64)), std::memory_order_release);
  }
  void mark_dirty(Gfn g) {
    sync::sched_touch(this);
    const uint64_t i = g - base_gfn;
    std::atomic_ref<uint64_t>(dirty_bitmap[i / 64]).fetch_or(1ull << (i % 64), std::memory_order_relaxed);
  }
  uint64_t peek_dirty_word(size_t w) const {
    return std::atomic_ref<const uint64_t>(dirty_bitmap[w]).load(std::memory_order_relaxed);
  }
  uint64_t clear_dirty_bits(size_t w, uint64_t mask) {
    return std::atomic_ref<uint64_t>(dirty_bitmap[w]).fetch_and(~mask) & mask;
  }
  uint64_t private_word(size_t w) const {
    return std::atomic_ref<uint64_t>(const_cast<uint64_t&>(private_bits[w])).load(std::memory_order_acquire);
  }
  uint64_t take_dirty_word(size_t w) {
    sync::sched_touch(this);
    return std::atomic_ref<uint64_t>(dirty_bitmap[w]).exchange(0);
  }
};

// Why a vCPU access or fault did not complete.
enum class ExitReason : uint8_t {
  None,          // done
  MemoryFault,   // KVM_EXIT_MEMORY_FAULT: private/shared mismatch, userspace must convert
  Mmio,          // emulated MMIO
  NoMemory,      // cache top-up failed (-ENOMEM)
  VmDead,        // the VM is bugged
  Retry,         // gave up retrying (BUSY storms, entry refused)
  HostFault,     // KVM_RUN -EFAULT: the host mapping refuses the access (a write to a read-only VMA)
  InternalError, // KVM_EXIT_INTERNAL_ERROR: VP.ENTER failed (TD_FATAL)
};
const char* exit_reason_name(ExitReason r);

struct VmOpStats {
  uint64_t faults = 0, faults_fixed = 0, faults_spurious = 0, fault_retries = 0;
  uint64_t accesses = 0, accepts = 0, vp_enters = 0, kicks = 0;
  uint64_t accept_mismatches = 0;  // 4K accepts inside a 2M mapping (split + inhibit)
  uint64_t conversions = 0, memslot_adds = 0, memslot_deletes = 0, dirty_log_gets = 0;
  uint64_t init_mem_pages = 0;
};

// A vcpu->stat counter. Only the thread running the vCPU writes it (KVM
// holds vcpu->mutex across KVM_RUN), so a plain add is enough: a locked one
// cost two of the three locked instructions of a direct 4K fault, the third
// being the SPTE cmpxchg itself. Others may read it at any time.
class VcpuStat {
 public:
  // The new value.
  uint64_t inc() {
    const uint64_t n = v_.load(std::memory_order_relaxed) + 1;
    v_.store(n, std::memory_order_relaxed);
    return n;
  }
  uint64_t load() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// Cache-line aligned: vCPUs are allocated one after another, and one's hot
// counters must not share a line with the next one's fields.
struct alignas(64) Vcpu {
  explicit Vcpu(int i, PfnPool& pool) : id(i), caches(pool, i) {}
  int id;
  VcpuMmuCaches caches;
  MmuPage* root = nullptr;         // direct root (root.hpa)
  MmuPage* mirror_root = nullptr;  // mirror_root_hpa
  // In guest mode (between TDH.VP.ENTER and the exit). Another thread may
  // ask it out (kick) and wait until it is.
  std::atomic<bool> in_guest{false};
  std::atomic<bool> kick{false};
  // vcpu->stat: hot counters live with the vCPU (its own cache lines); Vm
  // sums them.
  VcpuStat faults, faults_fixed, faults_spurious, fault_retries;
  VcpuStat accesses, accepts, vp_enters, accept_mismatches;
  // The guest's tdx_accept_memory() loop, as far as the next access needs
  // it: the range (and its accept level) whose large accept just failed with
  // a size mismatch. Linux tries the large size once per aligned range and
  // goes on through the range at the next size down; pages of that range
  // the vCPU touches next skip the attempt that is bound to fail again.
  // The vCPU's thread sets it; a conversion of the range on another thread
  // clears it, for the guest's next accept of that memory is a new
  // accept_memory() call, which tries the large size again.
  std::atomic<uint64_t> accept_fallback_base{kNoAcceptFallback};
  std::atomic<PgLevel> accept_fallback_level{PgLevel::k4K};
  static constexpr uint64_t kNoAcceptFallback = ~0ull;
  // KVM's vcpu->mutex: one thread at a time runs a vCPU (every vCPU ioctl
  // holds it), which is what lets the stats above be bumped without a
  // locked instruction. The model takes no lock for it: the thread inside
  // writes its number here (VcpuRunGuard), and a second thread that comes
  // in meanwhile is reported as a vcpu_mutex violation.
  std::atomic<uint32_t> runner{0};
};

// Marks a vCPU as run by this OS thread for the guard's life; a thread that
// finds another one's mark reports it. Entries nested in this thread's own
// run pass. Fibers of one OS thread (the explorer's) share its number, so
// there it checks nothing: those never run a vCPU from two virtual threads.
class VcpuRunGuard {
 public:
  VcpuRunGuard(class Vm& vm, Vcpu& v);
  ~VcpuRunGuard() {
    if (outer_) v_.runner.store(0, std::memory_order_relaxed);
  }
  VcpuRunGuard(const VcpuRunGuard&) = delete;
  VcpuRunGuard& operator=(const VcpuRunGuard&) = delete;

 private:
  Vcpu& v_;
  bool outer_ = false;
};

class Vm : public tdx::VcpuKicker, private RemoteTlb {
 public:
  explicit Vm(const VmConfig& cfg, FaultInjector* inject = nullptr);
  ~Vm() override;
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  // Creates the TD (or plain VM) and its vCPUs. Returns 0 or -errno.
  int create();
  // KVM_SET_USER_MEMORY_REGION2. For a TD, kMemGuestMemfd adds private backing.
  int add_memslot(int id, uint64_t gpa, uint64_t size, uint32_t flags);
  // The same over host memory made by create_host_memory(): slots given
  // the same memory alias it (the first `size` bytes of it).
  int add_memslot(int id, uint64_t gpa, uint64_t size, uint32_t flags, std::shared_ptr<Backing> userspace);
  int delete_memslot(int id);
  // memfd_create() + mmap(MAP_SHARED): host memory for add_memslot(),
  // backed by pages of up to `huge` (4K; 2M for MFD_HUGETLB).
  std::shared_ptr<Backing> create_host_memory(uint64_t size, PgLevel huge);
  // mprotect() (ReadOnly, ReadWrite) or munmap() (None) of [offset,
  // offset + size) of that memory: the MMU notifier's invalidate_range_start
  // over every memslot mapping it, the change, then invalidate_range_end.
  int host_protect(const std::shared_ptr<Backing>& mem, uint64_t offset, uint64_t size, HostProt prot);
  // kvm_mmu_reset_context() (KVM_SET_SREGS changing CR0.WP): the vCPU's
  // roots are unloaded and loaded again on its next entry.
  int reset_mmu_context(int vcpu);
  // KVM_PRE_FAULT_MEMORY on `vcpu`: maps [*gpa, *gpa + *size) as a fault
  // would (private where the attributes say so; a TD's caller names the GPA
  // without the shared bit), advancing *gpa and shrinking *size past what
  // is mapped. 0 if anything was, else the error that stopped the first
  // page: -ENOENT no memslot, -EAGAIN a memslot being deleted,
  // -EOPNOTSUPP a TD not yet finalized, -EINVAL bad arguments.
  int pre_fault_memory(int vcpu, uint64_t* gpa, uint64_t* size);
  // The level of the leaf mapping gpa in the vCPU's root (the mirror root
  // for a TD's private GPA), 0 if none. Called from the vCPU's own thread.
  int mapped_level(int vcpu, uint64_t gpa);
  // KVM_TDX_INIT_MEM_REGION: PAGE.ADD of an initial image, before finalize.
  int init_mem_region(uint64_t gpa, uint64_t npages);
  int finalize();  // KVM_TDX_FINALIZE_VM
  // KVM_SET_MEMORY_ATTRIBUTES: converting zaps the side being dropped.
  int set_memory_attributes(uint64_t gpa, uint64_t size, bool to_private);
  // fallocate(PUNCH_HOLE) on guest_memfd.
  int punch_hole(uint64_t gpa, uint64_t size);
  int set_dirty_logging(int slot_id, bool on);
  // kvm_mmu_zap_all_fast(): direct roots invalidated, every vCPU made to
  // reload, the invalid roots zapped under the shared lock. A TD's mirror
  // root stays (the S-EPT has no fast zap).
  void zap_all_fast();
  // KVM_GET_DIRTY_LOG without manual protect: returns and clears the bitmap,
  // write-protecting the pages again.
  std::optional<std::vector<uint64_t>> get_dirty_log(int slot_id);
  // KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: KVM_GET_DIRTY_LOG only copies the
  // bitmap; KVM_CLEAR_DIRTY_LOG clears the bits of `mask` that are set and
  // write-protects those pages again. -EINVAL without dirty logging.
  std::optional<std::vector<uint64_t>> get_dirty_log_manual(int slot_id);
  int clear_dirty_log(int slot_id, const std::vector<uint64_t>& mask);

  // An EPT violation on `gpa` handled like kvm_mmu_page_fault() (with TDX's
  // local retry for private GPAs).
  // `accept_level` is the level of the guest's TDG.MEM.PAGE.ACCEPT that
  // exited (k1G: the exit was an ordinary access); it caps the mapping.
  ExitReason vcpu_fault(int vcpu, uint64_t gpa, bool write, PgLevel accept_level = PgLevel::k1G);
  // The guest on `vcpu` touches `gpa`: enters if needed, takes EPT
  // violations and handles them, accepts PENDING private pages at
  // `accept_level` (2M falls back to 4K on a size mismatch, as Linux does).
  ExitReason vcpu_access(int vcpu, uint64_t gpa, bool write, PgLevel accept_level = PgLevel::k4K);
  // Why the last vcpu_access that gave up (ExitReason::Retry) did: what each
  // of its attempts ran into. Empty when none has. Taking it clears it.
  std::string take_giveup_report();
  // "vcpu_mutex: ..." for the first vCPU two threads ran at once, or "".
  std::string vcpu_mutex_violation() const;
  void note_vcpu_mutex_violation(int vcpu, uint32_t inside, uint32_t coming);
  // Leaves guest mode (KVM_RUN returning to userspace). A thread running a
  // vCPU calls it when it stops issuing accesses, so kicks never wait on it.
  void vcpu_exit(int vcpu);
  // Takes every vCPU out of guest mode and waits until each is out
  // (kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE)); the kicker TDX uses.
  void kick_all_vcpus_out() override;
  // vCPUs run on their own threads (native or virtual): a kick must then be
  // a request the vCPU acknowledges, not something done on its behalf.
  void set_vcpus_threaded(bool on) { vcpus_threaded_ = on; }
  bool vcpus_threaded() const { return vcpus_threaded_; }
  // Teardown in the kernel's order. Idempotent.
  void destroy();

  // ---- accessors ----------------------------------------------------------
  const VmConfig& config() const { return cfg_; }
  bool is_td() const { return cfg_.type == VmType::Td; }
  uint64_t shared_gpa_bit() const { return shared_bit_; }  // 0 for a normal VM
  PfnPool& pool() { return *pool_; }
  BugTracker& bugs() { return bugs_; }
  TdpMmu& mmu() { return *mmu_; }
  tdx::TdxModule* module() { return module_.get(); }
  tdx::TdxOps* tdx() { return tdx_.get(); }
  const std::vector<std::unique_ptr<Memslot>>& memslots() const { return slots_; }
  const Memslot* find_slot(Gfn gfn) const;
  bool gfn_is_private(Gfn gfn) const;
  VmOpStats op_stats() const;
  int nr_vcpus() const { return static_cast<int>(vcpus_.size()); }
  bool destroyed() const { return destroyed_; }
  uint64_t mmu_invalidate_seq() const { return invalidate_seq_.load(); }
  // The SRCU that protects memslots in KVM, modelled as a reader/writer
  // lock: faults read, memslot updates write. Always taken before mmu_lock.
  sync::MmuLock& slots_lock() { return slots_lock_; }
  uint64_t sources_outstanding() const { return sources_.size(); }
  // The CPUs under the direct root (for a TD, the shared EPT): TLBs,
  // paging-structure caches, and what they saw go wrong. The private side's
  // TLBs are the TDX module's (tdx::TdxModule::tlb_violation()).
  GuestHw& hw() { return hw_; }

 private:
  bool unusable() const { return !usable_ || destroyed_; }
  Memslot* slot_by_id(int id);
  // Inline, both: every fault asks, and as calls they were 45 of a direct
  // fault's instructions.
  Memslot* slot_for(Gfn gfn) {
    sync::sched_touch(&slots_);
    for (auto& s : slots_)
      if (s->contains(gfn)) return s.get();
    return nullptr;
  }
  int vcpu_load_roots(Vcpu& v) {
    // kvm_mmu_reload(): roots in place and valid are loaded already.
    if (v.root && !v.root->role.invalid && (v.mirror_root || !is_td())) [[likely]]
      return mmu_->mmu_topup_memory_caches(v.caches);
    return vcpu_load_roots_slow(v);
  }
  int vcpu_load_roots_slow(Vcpu& v);  // a root to load or replace
  ExitReason tdp_fault_once(Vcpu& v, KvmPageFault& f, Memslot* slot, PgLevel accept_level, RetPf* ret);
  // tdp_fault_once()'s body, inlined into vcpu_fault() (vm_vcpu.cpp only).
  ExitReason tdp_fault_try(Vcpu& v, KvmPageFault& f, Memslot* slot, PgLevel accept_level, RetPf* ret);
  // One page of KVM_PRE_FAULT_MEMORY: kvm_tdp_map_page(); the level mapped.
  int pre_fault_page(Vcpu& v, uint64_t gpa, PgLevel* level);
  void vcpu_put_roots(Vcpu& v);
  void kvm_mmu_unmap_gfn_range(const GfnRange& r);
  // mmu_invalidate_begin/end(): a fault that looked up its pfn before or
  // during an invalidation retries (is_page_fault_stale).
  void mmu_invalidate_begin(Gfn start, Gfn end);
  bool mmu_invalidate_retry_gfn(uint64_t seq, Gfn gfn) const {
    if (cfg_.what_if.no_invalidate_retry) return false;
    // Under mmu_lock (held for read): the range only changes under it held
    // for write.
    if (invalidate_in_progress_.load() != 0 && gfn.v >= invalidate_range_start_.load(std::memory_order_relaxed) &&
        gfn.v < invalidate_range_end_.load(std::memory_order_relaxed))
      return true;
    return seq != invalidate_seq_.load();
  }
  void mmu_invalidate_end();
  mutable sync::TrackedMutex giveup_mu_;
  std::string giveup_report_;
  std::string vcpu_mutex_report_;  // under giveup_mu_
  void exit_guest(Vcpu& v);
  int set_dirty_logging_locked(Memslot& s, bool on);
  // The CPU's walk of the vCPU's direct root for gfn (the TDP MMU's own
  // pointer walk, no lock). A TD's shared EPTP has no A/D-enable bit, so
  // the walk sets neither.
  HwWalk hw_walk(Vcpu& v, Gfn gfn);
  HwWalk walk_root(MmuPage* root, Gfn gfn);
  // A guest access through the direct root: TLB first, else the walk,
  // which fills it. False: an EPT violation for KVM, or a reload request
  // (*reload set) that must be handled outside the guest.
  bool hw_access(Vcpu& v, Gfn gfn, bool write, bool* reload);
  // After an ioctl that took [start, end) away from the shared side
  // returned: a vCPU still translating a gfn of it is reported (tlb_stale).
  void check_no_translations(Gfn start, Gfn end, const char* after);
  // A conversion of [start, end) (GPAs) ends the guest's accept loops over
  // it: no vCPU goes on skipping a large accept there.
  void forget_accept_fallbacks(uint64_t start, uint64_t end);
  void range_changed(Gfn start, uint64_t npages) {
    if (MmuObserver* o = mmu_->observer()) [[unlikely]]
      o->on_gfn_range_changed(start, npages);
  }
  void flush(Gfn start, uint64_t npages) override;
  void table_freed(Pfn table) override { hw_.table_freed(table.v); }
  void mark_page_dirty(Memslot& s, Gfn gfn);
  PgLevel private_max_level(const Memslot& s, Gfn gfn, PgLevel backing, PgLevel accept_level) const;
  // tdx_handle_mismatched_accept(): the guest accepts at `level` inside a
  // larger private mapping: split it and never map that block huge again.
  int handle_mismatched_accept(Vcpu& v, Gfn gfn, PgLevel level);
  // Splits the private huge leaves that straddle `start` or `end` so an
  // unmap of [start, end) leaves the rest mapped (head and tail).
  int split_private_boundaries(Gfn start, Gfn end);
  enum class GuestAccess : uint8_t { Ok, Fault, Retry };
  GuestAccess guest_private_access(Vcpu& v, uint64_t gpa, PgLevel accept_level, PgLevel* fault_cap);

  VmConfig cfg_;
  FaultInjector* inject_;
  uint64_t shared_bit_ = 0;
  uint64_t gfn_direct_bits_ = 0;
  BugTracker bugs_;
  std::unique_ptr<PfnPool> pool_;
  std::unique_ptr<tdx::TdxModule> module_;
  std::unique_ptr<TdpMmu> mmu_;
  std::unique_ptr<tdx::TdxOps> tdx_;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  GuestHw hw_;
  std::vector<std::unique_ptr<Memslot>> slots_;
  std::vector<Pfn> sources_;  // PAGE.ADD source pages still held by "userspace"
  // VM-level operations (one thread at a time, or the kicker): plain enough.
  struct {
    ThreadCounter<uint64_t> kicks;  // one per TRACK at a teardown's every page
    std::atomic<uint64_t> conversions{0}, memslot_adds{0}, memslot_deletes{0}, dirty_log_gets{0};
    std::atomic<uint64_t> init_mem_pages{0};
  } stats_;
  std::atomic<uint64_t> invalidate_seq_{0};
  std::atomic<int> invalidate_in_progress_{0};
  std::atomic<uint64_t> invalidate_range_start_{0}, invalidate_range_end_{0};
  sync::MmuLock slots_lock_{sync::BrLock::Readers::Asymmetric, sync::MmuLock::ReadCount::Skipped};
  bool vcpus_threaded_ = false;
  bool created_ = false;
  // create() completed. A VMM whose VM or vCPU creation failed tears the VM
  // down; until then every other operation is refused.
  bool usable_ = false;
  bool destroyed_ = false;
};

}  // namespace mirrormmu
