// SPDX-License-Identifier: MIT
// The S-EPT hooks, as tdx.c implements them.
#include "tdx/tdx_ops.h"

#include <cerrno>

#include "base/running_vcpu.h"
#include "spte/spte.h"

namespace mirrormmu::tdx {

const char* td_state_name(TdState s) {
  switch (s) {
    case TdState::Uninitialized: return "uninitialized";
    case TdState::Initialized: return "initialized";
    case TdState::Runnable: return "runnable";
  }
  return "?";
}

TdxOps::TdxOps(TdxModule& module, PfnPool& pool, BugTracker& kvm, sync::MmuLock& mmu_lock)
    : module_(module), pool_(pool), kvm_(kvm), mmu_lock_(mmu_lock), vm_pamt_cache_(pool) {}

void TdxOps::kick() {
  stats_.kicks++;
  if (kicker_) kicker_->kick_all_vcpus_out();
}

void TdxOps::begin_no_vcpus() {
  // The contention comes from TDH.VP.ENTER (zero-step mitigation) or from
  // the guest's TDCALLs: keep vCPUs from entering, force them out, and the
  // second try is expected to succeed; only a KVM or module bug breaks that.
  wait_for_sept_zap_ = true;
  kick();
  stats_.no_vcpus_retries++;
  // Nothing can contend now; the model is told so, and BUSY here would be
  // a KVM or module bug, never an answer to inject.
  module_.set_host_exclusive(true);
}

void TdxOps::end_no_vcpus() {
  module_.set_host_exclusive(false);
  wait_for_sept_zap_ = false;
  sync::wake_event(&wait_for_sept_zap_);
}

int TdxOps::link_external_spt(Gfn gfn, PgLevel level, Pfn external_spt) {
  // [P1 DPAMT] the S-EPT page becomes a 4K TD page. The reference is taken
  // at link time, the alternative proposed in the P1 thread, not when the
  // cache allocates the page ([P1]'s page_get): the MMU's caches stay plain.
  if (int err = tdx_pamt_get(external_spt, PgLevel::k4K, pamt_cache_for(kvm_get_running_vcpu()))) return err;
  const Ret r = module_.tdh_mem_sept_add(gfn.gpa(), tdx_level(level), external_spt);
  if (!r.ok()) tdx_pamt_put(external_spt, PgLevel::k4K);
  if (is_busy(r.status)) return -EBUSY;
  if (tdx_bug_on(r.status, kvm_, Site::tdh_mem_sept_add)) return -EIO;
  return 0;
}

int TdxOps::set_external_spte(Gfn gfn, PgLevel level, uint64_t mirror_spte) {
  // [P1] patch 45: 2M once the TD is runnable, always 4K while it is built.
  const bool runnable = state_ == TdState::Runnable;
  const PgLevel max = runnable ? PgLevel::k2M : PgLevel::k4K;
  if (kvm_bug_on(level > max, kvm_, Site::tdx_set_level)) return -EIO;
  // S-EPT leaves are always RWX: TDX handles every private fault as a write.
  warn_on_once(!spte::is_shadow_present(mirror_spte) || (mirror_spte & spte::kRwx) != spte::kRwx,
               kvm_, Site::tdx_set_not_rwx);
  const Pfn pfn = spte::to_pfn(mirror_spte);
  // TD build: only KVM_TDX_INIT_MEM_REGION may map private memory, and it
  // supplies the source page to measure and encrypt.
  if (!runnable && kvm_bug_on(pre_fault_allowed_ || !page_add_src_.valid(), kvm_, Site::tdx_page_add_state))
    return -EIO;
  // [P1 DPAMT] a 4K leaf needs its region's pair (a no-op at 2M).
  if (int err = tdx_pamt_get(pfn, level, pamt_cache_for(kvm_get_running_vcpu()))) return err;
  const Ret r = runnable ? module_.tdh_mem_page_aug(gfn.gpa(), tdx_level(level), pfn)
                         : module_.tdh_mem_page_add(gfn.gpa(), tdx_level(level), pfn, page_add_src_);
  if (r.ok()) return 0;
  tdx_pamt_put(pfn, level);
  if (is_busy(r.status)) return -EBUSY;
  tdx_bug_on(r.status, kvm_, runnable ? Site::tdh_mem_page_aug : Site::tdh_mem_page_add);
  return -EIO;
}

void TdxOps::tdx_track() {
  // Nothing has ever run, so no TLB holds a translation to flush.
  if (state_ != TdState::Runnable) return;
  sync::assert_held_write(mmu_lock_, kvm_);
  const Ret r = tdh_do_no_vcpus([&] { return Ret{module_.tdh_mem_track()}; });
  tdx_bug_on(r.status, kvm_, Site::tdh_mem_track);
  // Every vCPU still in the guest entered in an old epoch; forcing them out
  // drains that epoch so the block counts as tracked.
  if (!skip_kick_after_track_) [[likely]]
    kick();
}

void TdxOps::tdx_quirk_reset_page(Pfn page) {
  // MOVDIR64B over the page clears its integrity state before host reuse.
  stats_.page_resets++;
}

void TdxOps::remove_external_spte(Gfn gfn, PgLevel level, uint64_t mirror_spte) {
  // [B] 4K only; the RFC layouts that split reuse the hook for 2M leaves.
  tdx_sept_remove_private_spte(gfn, level, mirror_spte, PgLevel::k2M);
}

int TdxOps::tdx_sept_remove_private_spte(Gfn gfn, PgLevel level, uint64_t mirror_spte, PgLevel max_level) {
  sync::assert_held_write(mmu_lock_, kvm_);
  // Leaves exist only while the HKID is assigned: guest_memfd removes every
  // private page before the VM releases its key.
  if (kvm_bug_on(!module_.hkid_assigned(), kvm_, Site::tdx_remove_no_hkid)) return -EIO;
  if (kvm_bug_on(level > max_level, kvm_, Site::tdx_remove_level)) return -EIO;
  const uint64_t gpa = gfn.gpa();
  const int tl = tdx_level(level);

  Ret r = tdh_do_no_vcpus([&] { return module_.tdh_mem_range_block(gpa, tl); });
  if (tdx_bug_on(r.status, kvm_, Site::tdh_mem_range_block)) return -EIO;
  tdx_track();
  // Races with TDH.VP.ENTER (zero-step) and the guest's TDCALLs on the entry.
  r = tdh_do_no_vcpus([&] { return module_.tdh_mem_page_remove(gpa, tl); });
  if (tdx_bug_on(r.status, kvm_, Site::tdh_mem_page_remove)) return -EIO;
  // The cache lines of every 4K page of a huge one are written back.
  const Pfn pfn = spte::to_pfn(mirror_spte);
  for (uint64_t i = 0; i < pages_per_hpage(level); i++) {
    if (!skip_wbinvd_ && tdx_bug_on(module_.tdh_phymem_page_wbinvd(pfn + i, module_.hkid()), kvm_,
                                    Site::tdh_phymem_page_wbinvd))
      return -EIO;
    tdx_quirk_reset_page(pfn + i);
  }
  // [DPAMT] the module dropped the page's 4K entry (a no-op for 2M). Last,
  // as in the kernel: a failure above bugs the VM and keeps the reference.
  tdx_pamt_put(pfn, level);
  return 0;
}

int TdxOps::tdx_reclaim_page(Pfn page) {
  // No BUSY handling: pages are reclaimed only after the HKID is released,
  // when nothing can contend.
  const Status err = module_.tdh_phymem_page_reclaim(page);
  if (tdx_bug_on(err, kvm_, Site::tdh_phymem_page_reclaim)) return -EIO;
  tdx_quirk_reset_page(page);
  return 0;
}

int TdxOps::free_external_spt(Gfn gfn, PgLevel level, Pfn external_spt) {
  // KVM never frees mirror page tables while the TD is alive.
  if (kvm_bug_on(module_.hkid_assigned(), kvm_, Site::tdx_free_hkid_assigned)) return -EIO;
  const int r = tdx_reclaim_page(external_spt);
  // A page that failed reclaim is the module's still: its reference stays.
  if (r) stats_.leaked_pages++;
  else tdx_pamt_put(external_spt, PgLevel::k4K);
  return r;
}

}  // namespace mirrormmu::tdx
