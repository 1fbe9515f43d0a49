// SPDX-License-Identifier: MIT
// A plain VM's direct-root MMU behind one interface, so one shared-memory
// workload runs on the model (PlainVm) or on the kernel tree's own
// tdp_mmu.c (oracle/, `--mmu kernel`). Operations are KVM's entry points as
// a VMM reaches them (memslot ioctls, a vCPU's EPT violation, the dirty
// log); each takes the locks KVM takes.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "spte/transition_class.h"

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

class DirectMmu {
 public:
  virtual ~DirectMmu() = default;
  virtual std::string name() const = 0;  // "model", "kernel 6.12.117"

  virtual int memslot_set(int id, uint64_t base_gfn, uint64_t npages) = 0;
  virtual int memslot_delete(int id) = 0;
  // On: write-protect the slot (no PML), faults map 4K and log writes.
  virtual int memslot_dirty_log(int id, bool on) = 0;
  // A vCPU's EPT violation with the pfn faulted in; host_level is the size
  // of the host mapping. RET_PF_* (Fixed 5, Spurious 6, Retry 1...) or -errno.
  virtual int fault(int vcpu, uint64_t gfn, uint64_t pfn, bool write, int host_level) = 0;
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

  DirectMmuStats& stats() { return stats_; }

 protected:
  DirectMmuStats stats_;
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
