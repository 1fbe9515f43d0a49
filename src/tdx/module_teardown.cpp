// SPDX-License-Identifier: MIT
// HKID release and page reclaim: VP.FLUSH, MNG.VPFLUSHDONE, PHYMEM.CACHE.WB,
// MNG.KEY.FREEID, PHYMEM.PAGE.RECLAIM, PHYMEM.PAGE.WBINVD.
//
// Lifecycle: KEYS_CONFIGURED -(VPFLUSHDONE)-> BLOCKED -(CACHE.WB, KEY.FREEID)->
// TEARDOWN. From TEARDOWN on every page the TD owns can be reclaimed in any
// order, except the TDR, which must be last (CHLDCNT == 0).
//
// Reclaiming an S-EPT page (or the TDCS page holding the root) drops its
// table from the model: the TD can never run again, the entries inside are
// gone, and for_each_entry stops reporting them. An entry in a
// not-yet-reclaimed parent that pointed at it is still reported (its state is
// what the module last wrote), but no walk descends through it.
#include "tdx/module_impl.h"

namespace mirrormmu::tdx {

Status TdxModule::Impl::vp_flush(int vcpu) {
  LockSet locks(*this);
  Vcpu* v = find_vcpu(vcpu);
  if (v == nullptr) return with_operand(TDX_PAGE_METADATA_INCORRECT, Operand::RCX);
  if (Status s = check_tdr(Operand::TDR)) return s;
  if (Status s = locks.tdr(LockMode::Shared, Operand::TDR)) return s;
  if (m.lifecycle_ != Lifecycle::KeysConfigured) return TDX_TD_KEYS_NOT_CONFIGURED;
  if (v->guest()) return with_operand(TDX_OPERAND_BUSY, Operand::RCX);
  // The kernel's tdx_flush_vp() tolerates exactly this status.
  if (!v->associated) return TDX_VCPU_NOT_ASSOCIATED;
  v->associated = false;
  return TDX_SUCCESS;
}

Status TdxModule::Impl::mng_vpflushdone() {
  LockSet locks(*this);
  if (Status s = check_tdr(Operand::RCX)) return s;
  if (Status s = locks.tdr(LockMode::Exclusive, Operand::RCX)) return s;
  // HKID_ASSIGNED is allowed: KVM tears down a TD whose key config failed.
  if (m.lifecycle_ != Lifecycle::HkidAssigned && m.lifecycle_ != Lifecycle::KeysConfigured) {
    return TDX_LIFECYCLE_STATE_INCORRECT;
  }
  for (const auto& [id, v] : vcpus) {
    if (v->associated) return TDX_FLUSHVP_NOT_DONE;
  }
  m.lifecycle_ = Lifecycle::Blocked;
  wbcache_done = false;
  return TDX_SUCCESS;
}

// Package-wide in the module; here the only HKID it can flush is this TD's.
// There is no interruption model, so `resume` changes nothing.
Status TdxModule::Impl::cache_wb(bool /*resume*/) {
  if (m.lifecycle_ != Lifecycle::Blocked) return TDX_NO_HKID_READY_TO_WBCACHE;
  wbcache_done = true;
  // Every line of the HKID, on every package.
  pamt.clean_all_caches();
  return TDX_SUCCESS;
}

Status TdxModule::Impl::mng_key_freeid() {
  LockSet locks(*this);
  if (Status s = check_tdr(Operand::RCX)) return s;
  if (Status s = locks.tdr(LockMode::Exclusive, Operand::RCX)) return s;
  if (m.lifecycle_ != Lifecycle::Blocked) return TDX_LIFECYCLE_STATE_INCORRECT;
  if (!wbcache_done) return TDX_WBCACHE_NOT_COMPLETE;
  m.lifecycle_ = Lifecycle::Teardown;
  return TDX_SUCCESS;
}

Status TdxModule::Impl::page_reclaim(Pfn page) {
  if (Status s = injected(Operand::RCX, /*contended=*/false)) return s;
  if (!pamt.in_range(page)) return with_operand(TDX_OPERAND_INVALID, Operand::RCX);
  // The model has one TD, so the page's owner is always this TD.
  if (m.lifecycle_ != Lifecycle::Teardown) return TDX_LIFECYCLE_STATE_INCORRECT;
  const PamtType type = pamt.type(page);
  // A DPAMT pair page belongs to no TD: the host takes it back with PAMT.REMOVE.
  if (type == PamtType::Nda || type == PamtType::Pamt) {
    return with_operand(TDX_PAGE_METADATA_INCORRECT, Operand::RCX);
  }
  // A 2M page is reclaimed through its first frame; a frame inside it is not
  // a page the PAMT knows at 4K.
  const int size = pamt.size_level(page);
  if ((page.v & (Pamt::frames(size) - 1)) != 0) return with_operand(TDX_PAGE_METADATA_INCORRECT, Operand::RCX);
  if (type == PamtType::Tdr && m.chldcnt() != 0) return TDX_TD_ASSOCIATED_PAGES_EXIST;

  switch (type) {
    case PamtType::Reg:
      m.chldcnt_.fetch_sub(static_cast<int64_t>(Pamt::frames(size)), std::memory_order_relaxed);
      break;
    case PamtType::Ept:
    case PamtType::Tdcx:
      tree.remove_table(page);
      m.chldcnt_.fetch_sub(1, std::memory_order_relaxed);
      break;
    case PamtType::Tdvpr: m.chldcnt_.fetch_sub(1, std::memory_order_relaxed); break;
    case PamtType::Tdr:
    case PamtType::Nda:
    case PamtType::Pamt: break;
  }
  pamt.clear(page, size);
  return TDX_SUCCESS;
}

// Flushes the page's cache lines for `hkid`; only legal once the module has
// let go of the page (after REMOVE or RECLAIM). The model has no caches, so
// success is the whole effect.
Status TdxModule::Impl::page_wbinvd(Pfn page, uint16_t /*hkid*/) {
  if (Status s = injected(Operand::RCX, /*contended=*/false)) return s;
  if (!pamt.in_range(page)) return with_operand(TDX_OPERAND_INVALID, Operand::RCX);
  if (pamt.type(page) != PamtType::Nda) return with_operand(TDX_PAGE_METADATA_INCORRECT, Operand::RCX);
  pamt.clean_cache(page);
  return TDX_SUCCESS;
}

// ---- public entry points ----------------------------------------------------------

Status TdxModule::tdh_phymem_page_reclaim(Pfn page) {
  // The page (its host physical address) stands where a GPA would, for traces.
  return impl_->call(Leaf::PHYMEM_PAGE_RECLAIM, page.v << kPageShift, 0, [&] { return impl_->page_reclaim(page); });
}

Status TdxModule::tdh_phymem_page_wbinvd(Pfn page, uint16_t hkid) {
  return impl_->call(Leaf::PHYMEM_PAGE_WBINVD, 0, 0, [&] { return impl_->page_wbinvd(page, hkid); });
}

Status TdxModule::tdh_vp_flush(int vcpu) {
  return impl_->call(Leaf::VP_FLUSH, 0, 0, [&] { return impl_->vp_flush(vcpu); });
}

Status TdxModule::tdh_mng_vpflushdone() {
  return impl_->call(Leaf::MNG_VPFLUSHDONE, 0, 0, [&] { return impl_->mng_vpflushdone(); });
}

Status TdxModule::tdh_phymem_cache_wb(bool resume) {
  return impl_->call(Leaf::PHYMEM_CACHE_WB, 0, 0, [&] { return impl_->cache_wb(resume); });
}

Status TdxModule::tdh_mng_key_freeid() {
  return impl_->call(Leaf::MNG_KEY_FREEID, 0, 0, [&] { return impl_->mng_key_freeid(); });
}

}  // namespace mirrormmu::tdx
