// TD build: KVM_TDX_INIT_MEM_REGION and KVM_TDX_FINALIZE_VM.
#include <cerrno>

#include "base/running_vcpu.h"
#include "sync/rcu.h"
#include "vm/vm.h"

namespace mirrormmu {

int Vm::init_mem_region(uint64_t gpa, uint64_t npages) {
  if (!is_td() || unusable()) return -EINVAL;
  if (bugs_.bugged()) return -EIO;
  if (tdx_->td_state() != tdx::TdState::Initialized) return -EINVAL;
  // A vCPU ioctl (KVM_TDX_INIT_MEM_REGION on vCPU 0): the hooks find their
  // PAMT cache through the running vCPU.
  Vcpu& v = *vcpus_[0];
  VcpuLoadGuard loaded(v.id);
  sync::RcuThread rcu_thread;
  sync::ReadGuard slots(slots_lock_);
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
  return tdx_->tdx_td_finalize();
}

}  // namespace mirrormmu
