// SPDX-License-Identifier: MIT
// TD build: KVM_TDX_INIT_MEM_REGION and KVM_TDX_FINALIZE_VM.
#include <cerrno>
#include <optional>

#include "base/running_vcpu.h"
#include "sync/rcu.h"
#include "vm/vm.h"

namespace mirrormmu {

// Both build ioctls take kvm->lock, every vcpu->mutex and slots_lock
// (tdx_acquire_vm_state_locks()), modelled as slots_lock held exclusively,
// and check the TD's state under them: the state a step depends on cannot
// change while it runs.
int Vm::init_mem_region(uint64_t gpa, uint64_t npages) {
  if (!is_td() || unusable()) return -EINVAL;
  if (bugs_.bugged()) return -EIO;
  const bool locks = !cfg_.what_if.no_vm_state_locks;
  if (!locks && tdx_->td_state() != tdx::TdState::Initialized) return -EINVAL;
  // A vCPU ioctl (KVM_TDX_INIT_MEM_REGION on vCPU 0): the hooks find their
  // PAMT cache through the running vCPU.
  Vcpu& v = *vcpus_[0];
  VcpuLoadGuard loaded(v.id);
  sync::RcuThread rcu_thread;
  std::optional<sync::WriteGuard> state_locks;
  std::optional<sync::ReadGuard> srcu_only;
  if (locks) state_locks.emplace(slots_lock_);
  else srcu_only.emplace(slots_lock_);
  if (locks && tdx_->td_state() != tdx::TdState::Initialized) return -EINVAL;
  for (uint64_t i = 0; i < npages; i++) {
    const Gfn gfn = Gfn::from_gpa(gpa) + i;
    Memslot* slot = slot_for(gfn);
    if (!slot || !slot->gmem) return -EINVAL;
    // The initial image is private memory from the start.
    slot->set_private(gfn, true);
    const Pfn src = pool_->alloc(PageOwner::HostSource);
    if (!src.valid()) return -ENOMEM;
    sources_.push_back(src);
    if (int r = tdx_->tdx_init_mem_region_begin(src)) return r;
    // kvm_tdp_mmu_map_private_pfn(): a synthetic private prefetch at 4K.
    KvmPageFault f;
    f.addr = gfn.gpa();
    f.gfn = gfn;
    f.prefetch = true;
    f.is_private = true;
    f.pfn = slot->gmem->get_pfn(gfn - slot->base_gfn);
    if (!f.pfn.valid()) return -ENOMEM;
    RetPf ret = RetPf::Retry;
    for (int attempt = 0; attempt < 64 && ret == RetPf::Retry; attempt++) {
      if (vcpu_load_roots(v)) return -ENOMEM;
      sync::ReadGuard lock(mmu_->mmu_lock());
      ret = mmu_->kvm_tdp_mmu_map(v.caches, v.root, v.mirror_root, f);
      if (bugs_.bugged()) break;
    }
    if (bugs_.bugged()) return -EIO;
    if (ret != RetPf::Fixed) return -EIO;
    if (int r = tdx_->tdx_init_mem_region_end(gfn)) return r;
    stats_.init_mem_pages++;
  }
  return 0;
}

int Vm::finalize() {
  if (!is_td() || unusable()) return -EINVAL;
  if (bugs_.bugged()) return -EIO;
  std::optional<sync::WriteGuard> state_locks;
  if (!cfg_.what_if.no_vm_state_locks) state_locks.emplace(slots_lock_);
  return tdx_->tdx_td_finalize();
}

}  // namespace mirrormmu
