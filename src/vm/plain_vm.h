// SPDX-License-Identifier: MIT
// The model's plain (non-TD) VM: one direct root shared by every vCPU,
// memslots with lpage_info and dirty bitmaps, and what mmu.c does around
// the TDP MMU for a shared-memory guest. The DirectMmu the kernel oracle is
// compared with; also what `run --mmu model --workload shared-life` runs.
#pragma once

#include <map>
#include <memory>
#include <vector>

#include "base/bug.h"
#include "mem/pfn_pool.h"
#include "mmu/observer.h"
#include "mmu/tdp_mmu.h"
#include "sync/mmu_lock.h"
#include "vm/direct_mmu.h"

namespace mirrormmu {

struct PlainVmConfig {
  int nr_vcpus = 1;
  // 6.12 rebuilds a present leaf on a repeated fault (and so drops its
  // Dirty bit); upstream since 6.13 returns SPURIOUS. See TdpMmuConfig.
  bool spurious_if_access_allowed = true;
  // A planted bug: faults do not hold the memslot read lock (SRCU in KVM),
  // so a memslot update (enabling dirty logging) can act on the MMU while a
  // fault that read the old slot is still installing its leaf.
  bool no_slots_lock_in_fault = false;
  // Another: the fault does not ask is_page_fault_stale(), so it maps into
  // a root a fast zap has already invalidated (and perhaps already zapped).
  bool no_stale_root_check = false;
  // The classic TLB bugs, each where KVM owes a flush: kvm_zap_gfn_range()
  // returns without flushing; KVM_GET_DIRTY_LOG write-protects without
  // flushing; a fast zap invalidates roots without making the vCPUs reload
  // (KVM_REQ_MMU_FREE_OBSOLETE_ROOTS), so they keep running on the old ones
  // while the back half zaps and frees their tables.
  bool no_flush_after_zap = false;
  bool no_flush_after_dirty_log = false;
  bool no_reload_request_in_fast_zap = false;
  // The MMU notifier's: a fault never asks mmu_invalidate_retry_gfn(), so a
  // pfn looked up before an invalidation is mapped after it.
  bool no_invalidate_retry = false;
  // fast_page_fault()'s: it makes a write-protected leaf writable again but
  // does not log the page (mark_page_dirty_in_slot() forgotten).
  bool fast_pf_no_mark_dirty = false;
  // Exclusive writes store plainly over entries the CPU or fast_page_fault
  // may be writing (see TdpMmuConfig).
  bool plain_store_over_volatile = false;
  // 6.12's KVM_PRE_FAULT_MEMORY: a prefault that meets a memslot being
  // deleted retries instead of returning -EAGAIN, while holding the memslot
  // read lock the deletion waits for.
  bool prefault_retries_invalid_slot = false;
  // An option: the slot keeps its small pages when dirty logging stops
  // (no kvm_mmu_zap_collapsible_sptes()).
  bool no_huge_page_recovery = false;
  // A planted bug: tdp_mmu_zap_spte_atomic() without its flush, so the table
  // a recovery zaps is freed while vCPUs still cache it.
  bool zap_atomic_no_flush = false;
  // An option: aging without mmu_lock, as upstream since 6.15 (off: 6.12's
  // aging under the exclusive lock). And its planted bug: the lockless
  // clear of Accessed is a plain store of the value it read.
  bool lockless_aging = true;
  bool age_plain_store = false;
  // An option: the iTLB multihit workaround (nx_huge_pages=on). And its
  // recovery worker's planted bug: the tables it zaps under the read lock
  // are freed without the TLB flush that must come before RCU lets go.
  bool nx_huge_pages = false;
  bool nx_recovery_no_flush = false;
};

class PlainVm : public DirectMmu, private MmuObserver, private RemoteTlb {
 public:
  explicit PlainVm(PlainVmConfig cfg);
  ~PlainVm() override;

  std::string name() const override { return cfg_.spurious_if_access_allowed ? "model" : "model-6.12"; }
  int memslot_set(int id, uint64_t base_gfn, uint64_t npages) override;
  int memslot_delete(int id) override;
  int memslot_dirty_log(int id, bool on) override;
  int fault(int vcpu, uint64_t gfn, bool write, int host_level) override;
  int exec_fault(int vcpu, uint64_t gfn, int host_level) override;
  int recover_nx_huge_pages(unsigned ratio) override;
  int set_nx_huge_pages(bool on) override;
  int pre_fault_memory(int vcpu, uint64_t gfn, uint64_t npages) override;
  void invalidate_range_start(uint64_t start, uint64_t end) override;
  void invalidate_range_end(uint64_t start, uint64_t end) override;
  bool age(uint64_t start, uint64_t end, bool test_only) override;
  bool zap_leafs(uint64_t start, uint64_t end) override;
  void zap_all_fast() override;
  int get_dirty_log(int id, std::vector<uint64_t>& bits) override;
  int split_huge_pages(int id, int target_level, bool shared) override;
  uint64_t lookup(int vcpu, uint64_t gfn, int* level) override;
  int peek_dirty_log(int id, std::vector<uint64_t>& bits) override;
  std::vector<DirectLeaf> leaves() override;
  int64_t pages(int level) override;
  std::vector<std::string> warnings() override;
  int64_t destroy() override;
  HwWalk walk(int vcpu, uint64_t gfn, WalkFor why) override;
  int reload_root(int vcpu) override;

 private:
  struct Slot {
    uint64_t base = 0, npages = 0;
    bool dirty_log = false;
    std::atomic<bool> invalid{false};  // KVM_MEMSLOT_INVALID: being deleted
    std::unique_ptr<std::atomic<uint64_t>[]> dirty;
  };
  struct Vcpu {
    explicit Vcpu(PfnPool& p) : caches(p) {}
    VcpuMmuCaches caches;
    // root.hpa: written by the vCPU's thread, read by the CPU's walk, which
    // the checks after an ioctl run from the VMM's thread.
    std::atomic<MmuPage*> root{nullptr};
  };
  void on_spte_changed(const SpteChange& c) override;
  void on_external_hook(HookKind, Gfn, PgLevel, int) override {}
  void flush(Gfn start, uint64_t npages) override;
  void table_freed(Pfn table) override { hw().table_freed(table.v); }
  void on_lost_update(Gfn gfn, PgLevel level, uint64_t expected, uint64_t actual, uint64_t new_spte) override;
  RetPf fast_page_fault(MmuPage* root, uint64_t gfn, Slot& s);
  Slot* slot_of(uint64_t gfn);
  int mmu_load(int vcpu);
  int fault_locked(int vcpu, uint64_t gfn, bool write, int host_level, bool prefetch, bool exec = false);
  int max_mapping_level(const Slot& s, uint64_t gfn, int host_level) const;
  // mmu_invalidate_retry_gfn(): without mmu_lock (the "unsafe" pre-checks)
  // or with it, the same reads.
  bool mmu_invalidate_retry_gfn(uint64_t mmu_seq, uint64_t gfn) const;

  PlainVmConfig cfg_;
  PfnPool pool_;
  BugTracker bugs_;
  std::unique_ptr<TdpMmu> mmu_;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  // Memslot updates vs faults (SRCU in KVM).
  sync::MmuLock slots_lock_{sync::BrLock::Readers::Asymmetric, sync::MmuLock::ReadCount::Skipped};
  std::map<int, Slot> slots_;
  // kvm->mmu_invalidate_*: written under mmu_lock held for write, read by
  // faults before they take it too.
  std::atomic<uint64_t> invalidate_seq_{0};
  std::atomic<int64_t> invalidate_in_progress_{0};
  std::atomic<uint64_t> invalidate_start_{0}, invalidate_end_{0};
  bool destroyed_ = false;
};

}  // namespace mirrormmu
