// SPDX-License-Identifier: MIT
// A plain VM's direct-root MMU behind one interface, so one shared-memory
// workload runs on the model (PlainVm) or on the kernel tree's own
// tdp_mmu.c (oracle/, `--mmu kernel`). Operations are KVM's entry points as
// a VMM reaches them (memslot ioctls, a vCPU's EPT violation, the dirty
// log); each takes the locks KVM takes.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "spte/transition_class.h"
#include "vm/guest_hw.h"
#include "vm/host_mm.h"

namespace mirrormmu {

struct DirectLeaf {
  uint64_t gfn;
  int level;
  uint64_t spte;
};

// What the MMU under test did, as its own tracepoints and flushes say.
struct DirectMmuStats {
  TransitionCounts transitions;  // every handle_changed_spte(), by class
  std::atomic<uint64_t> flushes{0};  // remote TLB flush requests, whole or ranged
};

// What a guest access did on the hardware.
enum class HwAccess : uint8_t {
  TlbHit,      // a cached translation allowed it
  Walked,      // the CPU's walk of the loaded root allowed it (and filled the TLB)
  EptViolation,  // the tables do not allow it: KVM's fault handler runs
};

class DirectMmu {
 public:
  virtual ~DirectMmu() = default;
  virtual std::string name() const = 0;  // "model", "kernel 6.12.117"

  virtual int memslot_set(int id, uint64_t base_gfn, uint64_t npages) = 0;
  virtual int memslot_delete(int id) = 0;
  // On: write-protect the slot (no PML), faults map 4K and log writes.
  virtual int memslot_dirty_log(int id, bool on) = 0;
  // A vCPU's EPT violation, handled as kvm_tdp_page_fault() does: the
  // invalidation sequence sampled, the pfn looked up in host() (host_level
  // is the size of the host mapping), the fault abandoned if an
  // invalidation may have raced it. RET_PF_* (Fixed 5, Spurious 6, Retry
  // 1...) or -errno.
  virtual int fault(int vcpu, uint64_t gfn, bool write, int host_level) = 0;
  // An instruction fetch's EPT violation (fault->exec). With the NX huge
  // page workaround on it never maps huge; -EOPNOTSUPP where not modelled.
  virtual int exec_fault(int vcpu, uint64_t gfn, int host_level) { return -EOPNOTSUPP; }
  // One pass of the NX huge page recovery worker: zap up to
  // ceil(splits / ratio) of the tables exec faults left where a huge page
  // could be, except in dirty-logged slots. How many it zapped, or -errno.
  virtual int recover_nx_huge_pages(unsigned ratio) { return -EOPNOTSUPP; }
  // The nx_huge_pages parameter for this VM, before anything is mapped
  // (-EBUSY after; -EOPNOTSUPP where not modelled).
  virtual int set_nx_huge_pages(bool on) { return -EOPNOTSUPP; }
  // KVM_PRE_FAULT_MEMORY on a vCPU for [gfn, gfn + npages): 0 when all is
  // mapped, -ENOENT where no memslot is, -EAGAIN if a memslot is being
  // deleted meanwhile, or another -errno.
  virtual int pre_fault_memory(int vcpu, uint64_t gfn, uint64_t npages) = 0;
  // The MMU notifier: kvm_mmu_notifier_invalidate_range_start() (the host
  // is about to change [start, end): the range is marked in progress and
  // zapped) and _end() (the sequence moves on).
  virtual void invalidate_range_start(uint64_t start, uint64_t end) = 0;
  virtual void invalidate_range_end(uint64_t start, uint64_t end) = 0;
  // The clear_young / test_young notifiers over gfns [start, end) of the
  // memslots: whether any was accessed (cleared unless test_only).
  virtual bool age(uint64_t start, uint64_t end, bool test_only) = 0;
  virtual bool zap_leafs(uint64_t start, uint64_t end) = 0;   // kvm_zap_gfn_range()
  virtual void zap_all_fast() = 0;                             // kvm_mmu_zap_all_fast()
  // KVM_GET_DIRTY_LOG without manual protect: collect and re-protect.
  virtual int get_dirty_log(int id, std::vector<uint64_t>& bits) = 0;
  virtual int split_huge_pages(int id, int target_level, bool shared) = 0;

  // What the CPU's walk of the vCPU's root finds for gfn (lockless, under
  // RCU): the leaf SPTE and its level, or 0 when nothing is mapped.
  virtual uint64_t lookup(int vcpu, uint64_t gfn, int* level) = 0;
  // The slot's dirty bitmap as it stands, without collecting it.
  virtual int peek_dirty_log(int id, std::vector<uint64_t>& bits) = 0;
  // Every present leaf of every valid root; each root's leaves in gfn order.
  virtual std::vector<DirectLeaf> leaves() = 0;
  virtual int64_t pages(int level) = 0;          // kvm->stat.pages[level - 1]
  virtual std::vector<std::string> warnings() = 0;  // "lockdep_assert_held at tdp_mmu.c:921"
  // The VM's destruction; page-table pages still accounted afterwards.
  virtual int64_t destroy() = 0;
  // Give the VM up without destroying it: its threads are parked for good
  // (a deadlocked execution), so nothing may touch it again. The caller
  // leaks it.
  virtual void abandon() {}

  // ---- the hardware (vm/guest_hw.h) ----------------------------------------
  // The guest on `vcpu` touches gfn: it enters guest mode (reloading its root
  // first if a request says so), then the TLB, else the walk of its root.
  // A scheduling point of the deterministic engine.
  HwAccess guest_access(int vcpu, uint64_t gfn, bool write, bool exec = false);
  // After an ioctl that promised the tables and the TLBs agree on
  // [start, end) (a zap, write-protection for dirty logging) returned: a
  // cached translation the tables no longer grant is reported as
  // "tlb_stale: ..." (also recorded in hw().violation()); "" if none.
  std::string check_translations(uint64_t start, uint64_t end, const char* after);
  GuestHw& hw() { return *hw_; }
  HostMm& host() { return *host_; }
  // The host migrates [gfn, gfn + npages) to frames from new_pfn on: the
  // notifier around the remap, then the old frames are freed (hw() checks
  // nobody still translates to them).
  void host_migrate(uint64_t gfn, uint64_t npages, uint64_t new_pfn);
  // The CPU's walk of the vCPU's loaded root for gfn (whatever its state:
  // hardware does not know a root is invalid). For a guest access it sets
  // Accessed and, on a write through a writable leaf, Dirty: a writer of
  // SPTEs that never takes mmu_lock.
  virtual HwWalk walk(int vcpu, uint64_t gfn, WalkFor why) = 0;
  // KVM_REQ_MMU_FREE_OBSOLETE_ROOTS then kvm_mmu_reload(): put an invalid
  // root, load a valid one. 1 if a root was loaded (the implementation has
  // called hw().flush_current()), 0 if the old one stays, or -errno.
  virtual int reload_root(int vcpu) = 0;

  DirectMmuStats& stats() { return stats_; }

 protected:
  explicit DirectMmu(int nr_vcpus) : own_hw_(nr_vcpus) {}
  // A wrapper that forwards to another DirectMmu runs on that one's
  // hardware, where its flushes land.
  void use_hw_of(DirectMmu& inner) {
    hw_ = &inner.hw();
    host_ = &inner.host();
  }

  DirectMmuStats stats_;

 private:
  GuestHw own_hw_;
  GuestHw* hw_ = &own_hw_;
  HostMm own_host_;
  HostMm* host_ = &own_host_;
};

using DirectMmuFactory = std::unique_ptr<DirectMmu> (*)(int nr_vcpus);
// `--mmu NAME`: "model" always; "kernel" when built with a kernel tree.
void register_direct_mmu(const std::string& name, DirectMmuFactory f);
DirectMmuFactory find_direct_mmu(const std::string& name);
std::vector<std::string> direct_mmu_names();
// "" when `name` is registered, else the one line that says why not (and,
// for "kernel", how to get a binary that has it).
std::string direct_mmu_refusal(const std::string& name);

}  // namespace mirrormmu
