// SPDX-License-Identifier: MIT
// TD and vCPU build: MNG.CREATE, MNG.KEY.CONFIG, MNG.ADDCX, MNG.INIT,
// VP.CREATE/ADDCX/INIT, MR.EXTEND, MR.FINALIZE.
//
// These take the TDR exclusively in the module; KVM serializes them itself.
// Each control page handed over becomes a child of the TDR (CHLDCNT + 1) so
// the TDR can only be reclaimed after every one of them. Each control page is
// a 4K page, so with Dynamic PAMT its region needs a page pair.
#include "tdx/module_impl.h"

namespace mirrormmu::tdx {

namespace {
constexpr OpStates kUninitialized{OpState::Uninitialized};
constexpr OpStates kInitialized{OpState::Initialized};
constexpr uint64_t kMrExtendChunk = 256;
}  // namespace

Status TdxModule::Impl::mng_create(Pfn tdr, uint16_t hkid) {
  if (!pamt.in_range(tdr)) return with_operand(TDX_OPERAND_ADDR_RANGE_ERROR, Operand::RCX);
  LockSet locks(*this);
  if (Status s = locks.pamt_region(tdr, LockMode::Shared, Operand::RCX)) return s;
  if (pamt.type(tdr) != PamtType::Nda) return with_operand(TDX_PAGE_METADATA_INCORRECT, Operand::RCX);
  // HKID 0 is the host's (TME) key; a TD needs a private one.
  if (hkid == 0) return with_operand(TDX_OPERAND_INVALID, Operand::RDX);
  // The model holds one TD per module instance.
  if (m.lifecycle_ != Lifecycle::None) return TDX_LIFECYCLE_STATE_INCORRECT;
  if (Status s = require_pamt_pair(tdr, Operand::RCX)) return s;
  pamt.set(tdr, 0, PamtType::Tdr);
  m.tdr_ = tdr;
  m.hkid_ = hkid;
  m.lifecycle_ = Lifecycle::HkidAssigned;
  return TDX_SUCCESS;
}

Status TdxModule::Impl::mng_key_config() {
  LockSet locks(*this);
  if (Status s = check_tdr(Operand::RCX)) return s;
  if (Status s = locks.tdr(LockMode::Exclusive, Operand::RCX)) return s;
  if (m.lifecycle_ != Lifecycle::HkidAssigned) return TDX_KEY_STATE_INCORRECT;
  m.lifecycle_ = Lifecycle::KeysConfigured;
  return TDX_SUCCESS;
}

Status TdxModule::Impl::mng_addcx(Pfn tdcx) {
  LockSet locks(*this);
  if (Status s = check_tdr(Operand::RDX)) return s;
  if (Status s = locks.tdr(LockMode::Exclusive, Operand::RDX)) return s;
  if (m.lifecycle_ != Lifecycle::KeysConfigured) return TDX_TD_KEYS_NOT_CONFIGURED;
  if (m.op_state_ != OpState::Uninitialized) return TDX_OP_STATE_INCORRECT;
  if (tdcs.size() >= static_cast<size_t>(m.cfg_.tdcs_pages)) {
    return with_operand(TDX_OPERAND_INVALID, Operand::RCX);  // no TDCS slot left
  }
  if (Status s = locks.pamt_region(tdcx, LockMode::Shared, Operand::RCX)) return s;
  if (Status s = check_new_page(tdcx, 0, Operand::RCX)) return s;
  if (Status s = require_pamt_pair(tdcx, Operand::RCX)) return s;
  pamt.set(tdcx, 0, PamtType::Tdcx);
  m.chldcnt_.fetch_add(1, std::memory_order_relaxed);
  // The first TDCS page holds the S-EPT root, initialised all FREE.
  if (tdcs.empty()) tree.create_root(tdcx);
  tdcs.push_back(tdcx);
  return TDX_SUCCESS;
}

Status TdxModule::Impl::mng_init() {
  LockSet locks(*this);
  if (Status s = td_prologue(locks, Operand::RCX, LockMode::Exclusive, kUninitialized)) return s;
  m.op_state_ = OpState::Initialized;
  m.td_epoch_ = 1;
  return TDX_SUCCESS;
}

Status TdxModule::Impl::vp_create(int vcpu, Pfn tdvpr) {
  LockSet locks(*this);
  if (Status s = td_prologue(locks, Operand::RDX, LockMode::Shared, kBuildOrRun)) return s;
  // The vCPU index stands in for the TDVPR identity; a reused index is a bad TDVPR.
  if (vcpu < 0 || find_vcpu(vcpu) != nullptr) return with_operand(TDX_OPERAND_INVALID, Operand::RCX);
  if (Status s = locks.pamt_region(tdvpr, LockMode::Shared, Operand::RCX)) return s;
  if (Status s = check_new_page(tdvpr, 0, Operand::RCX)) return s;
  if (Status s = require_pamt_pair(tdvpr, Operand::RCX)) return s;
  pamt.set(tdvpr, 0, PamtType::Tdvpr);
  m.chldcnt_.fetch_add(1, std::memory_order_relaxed);
  auto v = std::make_unique<Vcpu>();
  v->tdvpr = tdvpr;
  index_vcpu(vcpu, v.get());
  vcpus.emplace(vcpu, std::move(v));
  return TDX_SUCCESS;
}

Status TdxModule::Impl::vp_addcx(int vcpu, Pfn tdcx) {
  LockSet locks(*this);
  Vcpu* v = find_vcpu(vcpu);
  if (v == nullptr) return with_operand(TDX_PAGE_METADATA_INCORRECT, Operand::RDX);
  if (Status s = check_tdr(Operand::TDR)) return s;
  if (Status s = locks.tdr(LockMode::Shared, Operand::TDR)) return s;
  if (m.lifecycle_ != Lifecycle::KeysConfigured) return TDX_TD_KEYS_NOT_CONFIGURED;
  // vCPU-state errors carry the TDVPR operand, telling them apart from the TD op-state.
  if (v->initialized || v->tdcx.size() >= static_cast<size_t>(m.cfg_.tdvpx_pages)) {
    return with_operand(TDX_OP_STATE_INCORRECT, Operand::TDVPR);
  }
  if (Status s = locks.pamt_region(tdcx, LockMode::Shared, Operand::RCX)) return s;
  if (Status s = check_new_page(tdcx, 0, Operand::RCX)) return s;
  if (Status s = require_pamt_pair(tdcx, Operand::RCX)) return s;
  pamt.set(tdcx, 0, PamtType::Tdcx);
  m.chldcnt_.fetch_add(1, std::memory_order_relaxed);
  v->tdcx.push_back(tdcx);
  v->associated = true;
  return TDX_SUCCESS;
}

Status TdxModule::Impl::vp_init(int vcpu) {
  LockSet locks(*this);
  Vcpu* v = find_vcpu(vcpu);
  if (v == nullptr) return with_operand(TDX_PAGE_METADATA_INCORRECT, Operand::RCX);
  if (Status s = check_tdr(Operand::TDR)) return s;
  if (Status s = locks.tdr(LockMode::Exclusive, Operand::TDR)) return s;
  if (m.lifecycle_ != Lifecycle::KeysConfigured) return TDX_TD_KEYS_NOT_CONFIGURED;
  if (v->initialized || v->tdcx.size() < static_cast<size_t>(m.cfg_.tdvpx_pages)) {
    return with_operand(TDX_OP_STATE_INCORRECT, Operand::TDVPR);
  }
  v->initialized = true;
  v->associated = true;
  return TDX_SUCCESS;
}

Status TdxModule::Impl::mr_extend(uint64_t gpa) {
  LockSet locks(*this);
  if (Status s = td_prologue(locks, Operand::RDX, LockMode::Exclusive, kInitialized)) return s;
  if ((gpa & (kMrExtendChunk - 1)) != 0 || (gpa >> tree.shared_bit()) != 0) {
    return with_operand(TDX_OPERAND_INVALID, Operand::RCX);
  }
  const SeptWalk w = tree.walk(gpa, 0);
  if (!w.reached) return with_operand(TDX_EPT_WALK_FAILED, Operand::RCX);
  if (w.state() != SeptState::Mapped) return with_operand(TDX_EPT_ENTRY_NOT_PRESENT, Operand::RCX);
  ++mrtd_chunks;
  return TDX_SUCCESS;
}

Status TdxModule::Impl::mr_finalize() {
  LockSet locks(*this);
  if (Status s = td_prologue(locks, Operand::RCX, LockMode::Exclusive, kInitialized)) return s;
  bool any_ready = false;
  for (const auto& [id, v] : vcpus) any_ready = any_ready || v->initialized;
  if (!any_ready) return TDX_NO_VCPUS;
  m.op_state_ = OpState::Runnable;
  return TDX_SUCCESS;
}

// ---- public entry points ----------------------------------------------------------

Status TdxModule::tdh_mng_create(Pfn tdr, uint16_t hkid) {
  return impl_->call(Leaf::MNG_CREATE, 0, 0, [&] { return impl_->mng_create(tdr, hkid); });
}

Status TdxModule::tdh_mng_key_config() {
  return impl_->call(Leaf::MNG_KEY_CONFIG, 0, 0, [&] { return impl_->mng_key_config(); });
}

Status TdxModule::tdh_mng_addcx(Pfn tdcx) {
  return impl_->call(Leaf::MNG_ADDCX, 0, 0, [&] { return impl_->mng_addcx(tdcx); });
}

Status TdxModule::tdh_mng_init() {
  return impl_->call(Leaf::MNG_INIT, 0, 0, [&] { return impl_->mng_init(); });
}

Status TdxModule::tdh_vp_create(int vcpu, Pfn tdvpr) {
  return impl_->call(Leaf::VP_CREATE, 0, 0, [&] { return impl_->vp_create(vcpu, tdvpr); });
}

Status TdxModule::tdh_vp_addcx(int vcpu, Pfn tdcx) {
  return impl_->call(Leaf::VP_ADDCX, 0, 0, [&] { return impl_->vp_addcx(vcpu, tdcx); });
}

Status TdxModule::tdh_vp_init(int vcpu) {
  return impl_->call(Leaf::VP_INIT, 0, 0, [&] { return impl_->vp_init(vcpu); });
}

Status TdxModule::tdh_mr_extend(uint64_t gpa) {
  return impl_->call(Leaf::MR_EXTEND, gpa, 0, [&] { return impl_->mr_extend(gpa); });
}

Status TdxModule::tdh_mr_finalize() {
  return impl_->call(Leaf::MR_FINALIZE, 0, 0, [&] { return impl_->mr_finalize(); });
}

}  // namespace mirrormmu::tdx
