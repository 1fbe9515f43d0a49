// SPDX-License-Identifier: MIT
// The hardware under a plain VM's direct root: per vCPU, the translations
// its TLB caches and the page tables its paging-structure caches hold, and
// whether it is in guest mode. Guest accesses fill them from a walk of the
// vCPU's loaded root; only what KVM really does empties them: a remote
// flush (whole, or the range kvm_flush_remote_tlbs_range() names), and the
// flush of the current context when kvm_mmu_load() installs a root.
//
// The point is what happens between a change and its flush. The tables may
// say a page is gone while a vCPU still translates it; that is allowed until
// KVM tells the host or userspace it is done. So the invariants sit where
// KVM's promises are: the host freeing a page (after the notifier, after a
// memslot is deleted), a page-table page freed, and an ioctl that returned
// (zap, write-protect for dirty logging) while a vCPU still holds more than
// the tables allow.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace mirrormmu {

// Why the CPU walks: to look (a checker, no side effects), or for a guest
// read or write, which set Accessed, and Dirty on a write, as EPT A/D does.
enum class WalkFor : uint8_t { Inspect, Read, Write };

// What the CPU's walk of a root found for one gfn.
struct HwWalk {
  bool leaf = false;       // a present leaf translates the gfn
  uint64_t pfn = 0;        // the 4K frame it translates the gfn to
  bool writable = false;   // the leaf lets the guest write
  bool dirty = false;      // the leaf's Dirty bit (a write through a clean one sets it first)
  bool executable = true;  // the leaf lets the guest fetch instructions
  int level = 0;           // of the leaf
  // Every table the walk read, root first: what a paging-structure cache
  // may keep. Identities are the MMU's own (pfn, address); only equality
  // with what table_freed() is told matters.
  std::array<uint64_t, 5> tables{};
  int ntables = 0;
};

class GuestHw {
 public:
  explicit GuestHw(int nr_vcpus);

  int nr_vcpus() const { return static_cast<int>(vcpus_.size()); }

  // ---- the TLB ------------------------------------------------------------
  // A cached translation of gfn that allows the access: the CPU uses it
  // without walking. A write through one cached clean walks again, since
  // the CPU must set the Dirty bit in the entry first.
  bool tlb_hit(int vcpu, uint64_t gfn, bool write, bool exec = false);
  // The walk's result enters the caches: its tables always, the leaf if any.
  // Not if a flush came since the vCPU entered: the flush's IPI took the
  // vCPU out, and what it walked before is gone with it.
  void fill(int vcpu, uint64_t gfn, const HwWalk& w);
  // kvm_flush_remote_tlbs() and kvm_flush_remote_tlbs_range(): a request
  // with KVM_REQUEST_WAIT, so when they return no vCPU is still completing
  // an access with what it had cached or walked before.
  void flush_all();
  void flush_range(uint64_t gfn, uint64_t npages);
  void flush_current(int vcpu);                  // kvm_mmu_load()'s flush_tlb_current

  // Every cached translation with its vCPU, for the checks after an ioctl;
  // not those of a vCPU that must reload its root before it runs again (the
  // reload flushes them).
  struct Cached {
    int vcpu;
    uint64_t gfn, pfn;
    bool writable;
  };
  std::vector<Cached> translations(uint64_t start, uint64_t end) const;

  // ---- KVM's promises, checked --------------------------------------------
  // The host takes frames [pfn_start, pfn_end) back (`why` says how): no
  // vCPU may still translate to them.
  void host_freed(uint64_t pfn_start, uint64_t pfn_end, const std::string& why);
  // A page-table page goes back to the allocator: no paging-structure cache
  // may still hold it (KVM flushes, or makes every vCPU reload, first).
  void table_freed(uint64_t table);
  // Records a violation found by a caller (the ioctl checks of DirectMmu).
  void report(std::string what);
  // The first violation, "" if none: "invariant: detail".
  std::string violation() const;

  // ---- guest mode and requests ---------------------------------------------
  // vcpu->mode = IN_GUEST_MODE, then the requests: false if a reload was
  // requested (the vCPU is back outside; the caller reloads its root and
  // tries again), as vcpu_enter_guest() handles KVM_REQ_MMU_FREE_OBSOLETE_ROOTS.
  bool enter(int vcpu);
  void exit(int vcpu);
  // kvm_make_all_cpus_request(KVM_REQ_MMU_FREE_OBSOLETE_ROOTS), which has
  // KVM_REQUEST_WAIT: returns once no vCPU is still in the guest on a root
  // it loaded before the request.
  void request_reload_all_and_wait();

 private:
  struct Entry {
    bool leaf = false;
    uint64_t pfn = 0;
    bool writable = false;
    bool dirty = false;
    bool executable = false;
    std::array<uint64_t, 5> tables{};
    int ntables = 0;
  };
  struct Vcpu {
    mutable std::mutex mu;
    std::unordered_map<uint64_t, Entry> entries;  // by gfn
    uint64_t flush_gen = 0;   // flushes so far (under mu)
    uint64_t entered_gen = 0; // flush_gen when the vCPU last entered
    std::atomic<bool> in_guest{false};
    std::atomic<uint64_t> entries_count{0};  // guest entries, to wait for one
    std::atomic<bool> reload{false};
  };
  // KVM_REQUEST_WAIT: every vCPU in the guest when the request was made has
  // left it since.
  void wait_for_guests();
  // Calls fn(vcpu, gfn, entry) for what each vCPU could still use (not a
  // vCPU with a reload pending: it flushes first) until fn returns true.
  template <class Fn>
  void for_each_usable(Fn&& fn) const;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  mutable std::mutex violation_mu_;
  std::string violation_;
};

}  // namespace mirrormmu
