// SPDX-License-Identifier: MIT
// The TD's life as tdx.c drives it: creation, build, finalize, vCPU entry,
// HKID release and the reclaim of control pages.
#include <algorithm>
#include <cerrno>

#include "tdx/tdx_ops.h"
#include "sync/sched.h"

namespace mirrormmu::tdx {

namespace {
constexpr int kSeamcallRetries = 10000;  // TDX_SEAMCALL_RETRIES
}  // namespace

// Every control page becomes a 4K TD page: with DPAMT it takes a reference
// on its region first (tdx_alloc_control_page) and gives it back if the
// SEAMCALL fails, so that a page the module never took holds none (teardown
// frees those without a reclaim, and without a put).
int TdxOps::tdx_add_control_page(Pfn page, const std::function<Status()>& seamcall) {
  if (int r = tdx_pamt_get_control(page)) return r;
  const Status err = seamcall();
  if (err != TDX_SUCCESS) tdx_pamt_put(page, PgLevel::k4K);
  if (tdx_bug_on(err, kvm_, Site::tdh_td_create)) return -EIO;
  return 0;
}

int TdxOps::tdx_td_init(uint16_t hkid) {
  tdr_ = pool_.alloc(PageOwner::TdControl);
  if (!tdr_.valid()) return -ENOMEM;
  if (int r = tdx_add_control_page(tdr_, [&] { return module_.tdh_mng_create(tdr_, hkid); })) return r;
  if (tdx_bug_on(module_.tdh_mng_key_config(), kvm_, Site::tdh_td_create)) return -EIO;
  for (int i = 0; i < module_.config().tdcs_pages; i++) {
    const Pfn p = pool_.alloc(PageOwner::TdControl);
    if (!p.valid()) return -ENOMEM;
    tdcs_.push_back(p);
    if (int r = tdx_add_control_page(p, [&] { return module_.tdh_mng_addcx(p); })) return r;
  }
  if (tdx_bug_on(module_.tdh_mng_init(), kvm_, Site::tdh_td_create)) return -EIO;
  state_ = TdState::Initialized;
  return 0;
}

int TdxOps::tdx_vcpu_create(int vcpu) {
  // struct vcpu_tdx's PAMT cache, indexed by vCPU id.
  if (static_cast<size_t>(vcpu) >= vcpu_pamt_caches_.size()) vcpu_pamt_caches_.resize(static_cast<size_t>(vcpu) + 1);
  if (!vcpu_pamt_caches_[static_cast<size_t>(vcpu)])
    vcpu_pamt_caches_[static_cast<size_t>(vcpu)] = std::make_unique<PamtCache>(pool_);
  VcpuPages vp{vcpu, pool_.alloc(PageOwner::TdControl), {}};
  if (!vp.tdvpr.valid()) return -ENOMEM;
  vcpu_pages_.push_back(vp);
  VcpuPages& v = vcpu_pages_.back();
  if (int r = tdx_add_control_page(v.tdvpr, [&] { return module_.tdh_vp_create(vcpu, v.tdvpr); })) return r;
  for (int i = 0; i < module_.config().tdvpx_pages; i++) {
    const Pfn p = pool_.alloc(PageOwner::TdControl);
    if (!p.valid()) return -ENOMEM;
    v.tdcx.push_back(p);
    if (int r = tdx_add_control_page(p, [&] { return module_.tdh_vp_addcx(vcpu, p); })) return r;
  }
  if (tdx_bug_on(module_.tdh_vp_init(vcpu), kvm_, Site::tdh_td_create)) return -EIO;
  return 0;
}

int TdxOps::tdx_init_mem_region_begin(Pfn source) {
  if (state_ != TdState::Initialized || pre_fault_allowed_) return -EINVAL;
  page_add_src_ = source;
  return 0;
}

int TdxOps::tdx_init_mem_region_end(Gfn gfn) {
  page_add_src_ = kInvalidPfn;
  // TDH.MR.EXTEND runs outside mmu_lock, 256 bytes at a time.
  for (uint64_t off = 0; off < kPageSize; off += 256)
    if (tdx_bug_on(module_.tdh_mr_extend(gfn.gpa() + off), kvm_, Site::tdh_mr_extend)) return -EIO;
  return 0;
}

int TdxOps::tdx_td_finalize() {
  if (state_ != TdState::Initialized) return -EINVAL;
  if (tdx_bug_on(module_.tdh_mr_finalize(), kvm_, Site::tdh_mr_finalize)) return -EIO;
  state_ = TdState::Runnable;
  pre_fault_allowed_ = true;
  return 0;
}

TdxOps::VcpuEntry TdxOps::tdx_vcpu_enter(int vcpu) {
  // While a zap retries with vCPUs kicked out, entry is refused so the retry
  // cannot collide with TDH.VP.ENTER or the guest's TDCALLs
  // (EXIT_FASTPATH_EXIT_HANDLED): the caller leaves guest mode and waits.
  if (kvm_.bugged() || state_ != TdState::Runnable) return {VcpuEntry::NotRunnable};
  if (wait_for_sept_zap_) return {VcpuEntry::Refused};
  uint64_t gpa = 0;
  const Status s = module_.tdh_vp_enter(vcpu, &gpa);
  if (s == TDX_SUCCESS) return {VcpuEntry::Entered};
  // VMEXIT_REASON_EPT_VIOLATION with the GPA in R8: the zero-step filter
  // found a logged GPA that still faults. tdx_handle_ept_violation() takes
  // it like any other.
  if (s == TDX_EXIT_EPT_VIOLATION) return {VcpuEntry::EptViolation, gpa};
  // BUSY (the S-EPT tree held against the filter, the epoch lock against a
  // TRACK) is EXIT_FASTPATH_EXIT_HANDLED; any other error ends KVM_RUN.
  if (status_base(s) == TDX_OPERAND_BUSY) return {VcpuEntry::Refused, 0, s};
  return {VcpuEntry::Error, 0, s};
}

void TdxOps::wait_for_zap_done() {
  while (wait_for_sept_zap_ && !kvm_.bugged()) sync::wait_event(&wait_for_sept_zap_);
}

void TdxOps::tdx_vcpu_exit(int vcpu) {
  if (module_.vcpu_in_guest(vcpu)) module_.td_exit(vcpu);
}

void TdxOps::tdx_mmu_release_hkid(const std::vector<int>& vcpus) {
  if (!module_.hkid_assigned()) return;
  for (int v : vcpus) {
    // Only vCPUs the module knows (a failed creation left none behind).
    const bool created = std::any_of(vcpu_pages_.begin(), vcpu_pages_.end(), [&](const VcpuPages& p) {
      return p.id == v && module_.pamt_type(p.tdvpr) == PamtType::Tdvpr;
    });
    if (!created) continue;
    tdx_vcpu_exit(v);
    // A vCPU that never ran on any CPU is not associated: nothing to flush.
    const Status err = module_.tdh_vp_flush(v);
    if (status_base(err) != TDX_VCPU_NOT_ASSOCIATED) tdx_bug_on(err, kvm_, Site::tdh_release_hkid);
  }
  Status err = module_.tdh_mng_vpflushdone();
  // Not a bug: some vCPU was not flushed. tdx.c bails out and nothing
  // retries, so the HKID stays assigned and every later reclaim leaks.
  if (err == TDX_FLUSHVP_NOT_DONE) return;
  if (tdx_bug_on(err, kvm_, Site::tdh_release_hkid)) return;  // the HKID is leaked
  // TDH.PHYMEM.CACHE.WB can be interrupted and is resumed; another thread
  // having done it already counts as done. A failure WARNs only (the kvm
  // argument is NULL), and KEY.FREEID then fails.
  err = TDX_SUCCESS;
  for (int i = kSeamcallRetries; i > 0; i--) {
    const bool resume = err != TDX_SUCCESS;
    err = module_.tdh_phymem_cache_wb(resume);
    if (err == TDX_INTERRUPTED_RESUMABLE) continue;
    if (err == TDX_NO_HKID_READY_TO_WBCACHE) err = TDX_SUCCESS;
    break;
  }
  warn_on_once(err != TDX_SUCCESS, kvm_, Site::tdh_phymem_cache_wb);
  tdx_bug_on(module_.tdh_mng_key_freeid(), kvm_, Site::tdh_release_hkid);
}

// Control pages go back to the host only once the module lets go of them;
// a page whose reclaim fails is leaked, never reused, and keeps its DPAMT
// reference (the module still holds its 4K entry).
void TdxOps::tdx_free_control_page(Pfn p) {
  if (!p.valid()) return;
  // A page the module never took (creation failed part-way) is the host's.
  if (module_.pamt_type(p) == PamtType::Nda) {
    pool_.free(p, PageOwner::TdControl);
  } else if (tdx_reclaim_page(p) == 0) {
    tdx_pamt_put(p, PgLevel::k4K);
    pool_.free(p, PageOwner::TdControl);
  } else {
    stats_.leaked_pages++;
  }
}

void TdxOps::tdx_vcpu_free(int vcpu) {
  if (static_cast<size_t>(vcpu) < vcpu_pamt_caches_.size() && vcpu_pamt_caches_[static_cast<size_t>(vcpu)]) {
    std::lock_guard g(pamt_lock_);
    vcpu_pamt_caches_[static_cast<size_t>(vcpu)]->free_all();
  }
  for (auto it = vcpu_pages_.begin(); it != vcpu_pages_.end(); ++it) {
    if (it->id != vcpu) continue;
    for (Pfn p : it->tdcx) tdx_free_control_page(p);
    tdx_free_control_page(it->tdvpr);
    vcpu_pages_.erase(it);
    return;
  }
}

void TdxOps::tdx_vm_destroy() {
  for (Pfn p : tdcs_) tdx_free_control_page(p);
  tdcs_.clear();
  // The TDR goes last: the module refuses to let it go while any page it
  // parents (S-EPT and control pages included) is still assigned. It is
  // the last 4K TD page: with its put the last PAMT pair goes.
  tdx_free_control_page(tdr_);
  tdr_ = kInvalidPfn;
  // Whatever the VM's PAMT cache still holds was never lent.
  std::lock_guard g(pamt_lock_);
  vm_pamt_cache_.free_all();
}

}  // namespace mirrormmu::tdx
