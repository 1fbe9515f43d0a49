// SPDX-License-Identifier: MIT
// What reaches KVM from the host and the VMM besides faults and memslots:
// host memory shared by several memslots and the MMU notifier that tells
// KVM of mprotect()/munmap() on it (mmu_stress_test), an MMU context reset,
// and KVM_PRE_FAULT_MEMORY (pre_fault_memory_test).
#include <algorithm>

#include "base/running_vcpu.h"
#include "sync/rcu.h"
#include "vm/vm.h"

namespace mirrormmu {

namespace {
// signal_pending() in kvm_tdp_map_page()'s retry loop: a VMM gives up on a
// prefault that only ever retries.
constexpr uint64_t kPrefaultRetryLimit = 100000;
}  // namespace

std::shared_ptr<Backing> Vm::create_host_memory(uint64_t size, PgLevel huge) {
  if (!size || size & (kPageSize - 1) || size & ((pages_per_hpage(huge) << kPageShift) - 1)) return nullptr;
  return std::make_shared<Backing>(*pool_, PageOwner::GuestShared, size >> kPageShift, huge);
}

int Vm::host_protect(const std::shared_ptr<Backing>& mem, uint64_t offset, uint64_t size, HostProt prot) {
  sync::RcuThread rcu_thread;
  if (!mem || unusable() || (offset | size) & (kPageSize - 1) || !size) return -EINVAL;
  const uint64_t first = offset >> kPageShift, n = size >> kPageShift;
  if (first + n > mem->npages() || first + n < first) return -EINVAL;
  // kvm_mmu_notifier_invalidate_range_start(): every memslot whose
  // userspace range overlaps the host range contributes its gfns. The
  // in-progress range is their hull, as kvm_mmu_invalidate_range_add()
  // grows it; each slot's part is unmapped (shared mappings only: guest
  // memory behind guest_memfd is not the host VMA's).
  sync::ReadGuard slots(slots_lock_);
  std::vector<GfnRange> ranges;
  for (const auto& s : slots_) {
    if (s->shared != mem || first >= s->npages) continue;
    ranges.push_back({s->base_gfn + first, s->base_gfn + std::min(first + n, s->npages), GfnFilter::Shared, true});
    if (cfg_.what_if.notifier_first_slot_only) break;
  }
  if (!ranges.empty()) {
    Gfn lo = ranges[0].start, hi = ranges[0].end;
    for (const GfnRange& r : ranges) lo = std::min(lo, r.start), hi = std::max(hi, r.end);
    sync::WriteGuard lock(mmu_->mmu_lock());
    mmu_invalidate_begin(lo, hi);
    for (const GfnRange& r : ranges) kvm_mmu_unmap_gfn_range(r);
  }
  // The host's page tables change between start and end: a fault that
  // looked the page up before the start retries, one after the end sees
  // the new protection.
  mem->protect(first, n, prot);
  for (const GfnRange& r : ranges) range_changed(r.start, r.end - r.start);
  if (!ranges.empty()) {
    sync::WriteGuard lock(mmu_->mmu_lock());
    mmu_invalidate_end();
  }
  return 0;
}

int Vm::reset_mmu_context(int vcpu) {
  if (vcpu < 0 || vcpu >= nr_vcpus() || unusable()) return -EINVAL;
  Vcpu& v = *vcpus_[vcpu];
  VcpuRunGuard run(*this, v);
  VcpuLoadGuard loaded(vcpu);
  sync::RcuThread rcu_thread;
  exit_guest(v);
  // kvm_mmu_unload(): the roots are put; a valid one is found again by
  // kvm_tdp_mmu_get_vcpu_root_hpa() on the next kvm_mmu_load(), which
  // flushes the current context's TLB entries as any root load does.
  {
    sync::ReadGuard lock(mmu_->mmu_lock());
    vcpu_put_roots(v);
  }
  return vcpu_load_roots(v) ? -ENOMEM : 0;
}

int Vm::pre_fault_page(Vcpu& v, uint64_t gpa, PgLevel* level) {
  KvmPageFault f;
  f.gfn = Gfn::from_gpa(gpa);
  f.prefetch = true;
  Memslot* slot = slot_for(f.gfn);
  // kvm_arch_vcpu_pre_fault_memory(): private if the attributes say so;
  // a shared GPA of a TD gets the direct bits (the shared bit).
  f.is_private = is_td() && slot && slot->gmem && slot->is_private(f.gfn);
  f.addr = f.is_private ? gpa : gpa | shared_bit_;
  // Under the explorer a prefault that spins is a livelock for it to
  // report; natively the VMM's signal ends it.
  const uint64_t limit = sync::sched_steered() ? UINT64_MAX : kPrefaultRetryLimit;
  for (uint64_t tries = 0;; tries++) {
    if (tries > limit) return -EINTR;
    if (bugs_.bugged()) return -EIO;  // KVM_REQ_VM_DEAD
    RetPf ret;
    switch (tdp_fault_once(v, f, slot, PgLevel::k1G, &ret)) {
      case ExitReason::None: break;
      case ExitReason::NoMemory: return -ENOMEM;
      default: return -EFAULT;  // kvm_mmu_prepare_memory_fault_exit(), hva_to_pfn()
    }
    switch (ret) {
      case RetPf::Fixed:
      case RetPf::Spurious:
      case RetPf::WriteProtected:
        *level = f.goal_level;
        if (cfg_.what_if.prefault_progress_max_level) *level = std::max(f.goal_level, PgLevel::k2M);
        return 0;
      case RetPf::Emulate: return -ENOENT;  // no memslot
      case RetPf::Retry:
        // "Punt the error to userspace if this is a prefault, as KVM's
        // prefaulting ABI doesn't provide the same forward progress
        // guarantees as KVM_RUN": the slot is being deleted or moved.
        if (slot && slot->is_invalid() && !cfg_.what_if.prefault_retries_invalid_slot) return -EAGAIN;
        sync::cond_resched_spin(&v);
        continue;
      default: return -EIO;  // "could not fix page fault during prefault"
    }
  }
}

int Vm::pre_fault_memory(int vcpu, uint64_t* gpa, uint64_t* size) {
  if (vcpu < 0 || vcpu >= nr_vcpus() || unusable()) return -EINVAL;
  // kvm_vcpu_pre_fault_memory()
  if ((*gpa | *size) & (kPageSize - 1) || *gpa + *size <= *gpa) return -EINVAL;
  if (is_td() && !tdx_->pre_fault_allowed()) return -EOPNOTSUPP;
  Vcpu& v = *vcpus_[vcpu];
  VcpuRunGuard run(*this, v);
  VcpuLoadGuard loaded(vcpu);
  sync::RcuThread rcu_thread;
  sync::ReadGuard slots(slots_lock_);  // srcu_read_lock(&kvm->srcu) across the loop
  const uint64_t full = *size;
  int r = 0;
  while (*size) {
    if (int e = vcpu_load_roots(v)) return full == *size ? e : 0;  // kvm_mmu_reload()
    PgLevel level = PgLevel::k4K;
    r = pre_fault_page(v, *gpa, &level);
    if (r < 0) break;
    // The mapping that covers *gpa may be huge: it ends at the end of its
    // aligned block, past which the next page starts.
    const uint64_t block = pages_per_hpage(level) << kPageShift;
    const uint64_t end = (*gpa & ~(block - 1)) + block;
    const uint64_t done = std::min(*size, end - *gpa);
    *gpa += done;
    *size -= done;
    sync::cond_resched_spin(&v);
  }
  // "Return success if at least one page was mapped successfully."
  return full == *size ? r : 0;
}

}  // namespace mirrormmu
