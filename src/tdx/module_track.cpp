// TLB tracking and the vCPU side: TDH.MEM.TRACK, TDH.VP.ENTER / TD exit,
// and the guest's TDG.MEM.PAGE.ACCEPT.
//
// TD_EPOCH starts at 1 (MNG.INIT). VP.ENTER counts the vCPU in
// refcount[epoch & 1] until it exits; TRACK advances the epoch only once no
// vCPU from the previous epoch is still inside, so two parities suffice.
#include "tdx/module_impl.h"

namespace mirrormmu::tdx {

namespace {
constexpr OpStates kRunnable{OpState::Runnable};
// The TDCALL never completes on an EPT violation: the vCPU exits to the host
// and VP.ENTER reports VMX exit reason 48 with a success class. The model
// records that value as the ACCEPT's status so traces can tell it apart.
constexpr Status kExitReasonEptViolation = 48;
}  // namespace

Status TdxModule::Impl::mem_track() {
  if (Status s = injected(Operand::TD_EPOCH)) return s;
  LockSet locks(*this);
  if (Status s = td_prologue(locks, Operand::RCX, LockMode::Shared, kBuildOrRun)) return s;
  if (Status s = locks.epoch(LockMode::Exclusive)) return s;
  if (epoch_refcount[(m.td_epoch_ - 1) & 1] != 0) return TDX_PREVIOUS_TLB_EPOCH_BUSY;
  ++m.td_epoch_;
  return TDX_SUCCESS;
}

Status TdxModule::Impl::vp_enter(int vcpu) {
  LockSet locks(*this);
  Vcpu* v = find_vcpu(vcpu);
  if (v == nullptr) return with_operand(TDX_PAGE_METADATA_INCORRECT, Operand::RCX);
  // A vCPU inside the guest holds its TDVPR: a second entry cannot take it.
  if (v->in_guest) return with_operand(TDX_OPERAND_BUSY, Operand::RCX);
  if (Status s = td_prologue(locks, Operand::TDR, LockMode::Shared, kRunnable)) return s;
  if (!v->initialized) return with_operand(TDX_OP_STATE_INCORRECT, Operand::TDVPR);
  // Zero-step mitigation: the filter re-walks the logged GPAs with the S-EPT
  // tree locked exclusively; host AUG/SEPT.ADD/BLOCK meanwhile get BUSY, and
  // if the lock is taken the entry itself fails with BUSY.
  if (v->zero_step_faults >= kSteppingEpfThreshold)
    if (Status s = locks.sept_tree(LockMode::Exclusive)) return s;
  if (Status s = locks.epoch(LockMode::Shared)) return s;
  ++epoch_refcount[m.td_epoch_ & 1];
  v->epoch = m.td_epoch_;
  v->in_guest = true;
  v->associated = true;
  return TDX_SUCCESS;
}

void TdxModule::Impl::td_exit(int vcpu) {
  Vcpu* v = find_vcpu(vcpu);
  if (v == nullptr || !v->in_guest) return;
  --epoch_refcount[v->epoch & 1];
  v->in_guest = false;
}

AcceptResult TdxModule::Impl::page_accept(int vcpu, uint64_t gpa, int level) {
  using Outcome = AcceptResult::Outcome;
  const auto to_guest = [](Status s) { return AcceptResult{Outcome::Status, s, 0, SeptState::Free}; };
  const auto exit_to_host = [](const SeptWalk& w) {
    return AcceptResult{Outcome::EptViolation, kExitReasonEptViolation, w.level, w.state()};
  };

  const Vcpu* v = find_vcpu(vcpu);
  if (v == nullptr || !v->in_guest) return to_guest(TDX_VCPU_NOT_ASSOCIATED);
  if (Status s = check_page_info(gpa, level, 0, 1)) return to_guest(s);

  SeptWalk w = tree.walk(gpa, level);
  if (!w.reached) {
    // A guest-accessible larger leaf already covers the GPA; anything else
    // above the requested level (FREE, blocked, a PENDING larger leaf) needs
    // the host: AUG or DEMOTE.
    if (w.state() == SeptState::Mapped) {
      return to_guest(TDX_PAGE_ALREADY_ACCEPTED | static_cast<uint64_t>(w.level));
    }
    return exit_to_host(w);
  }

  LockSet locks(*this);
  if (Status s = locks.entry(w.raw())) return to_guest(s);
  switch (w.state()) {
    case SeptState::Pending:
      w.raw() = sept::with_state(w.raw(), SeptState::Mapped);
      return AcceptResult{Outcome::Accepted, TDX_SUCCESS, level, SeptState::Mapped};
    case SeptState::Mapped:
      return to_guest(TDX_PAGE_ALREADY_ACCEPTED | static_cast<uint64_t>(level));
    case SeptState::NlMapped:
    case SeptState::NlBlocked:
      return to_guest(TDX_PAGE_SIZE_MISMATCH | static_cast<uint64_t>(level));
    case SeptState::Free:
    case SeptState::Blocked:
    case SeptState::PendingBlocked:
      break;
  }
  return exit_to_host(w);
}

// ---- public entry points ----------------------------------------------------------

Status TdxModule::tdh_mem_track() {
  return impl_->call(Leaf::MEM_TRACK, 0, 0, [&] { return impl_->mem_track(); });
}

Status TdxModule::tdh_vp_enter(int vcpu) {
  return impl_->call(Leaf::VP_ENTER, 0, 0, [&] { return impl_->vp_enter(vcpu); });
}

void TdxModule::td_exit(int vcpu) {
  std::lock_guard lock(impl_->mu);
  impl_->td_exit(vcpu);
}

void TdxModule::vcpu_ept_violation(int vcpu, bool private_gpa) {
  std::lock_guard lock(impl_->mu);
  if (Impl::Vcpu* v = impl_->find_vcpu(vcpu); v && private_gpa) v->zero_step_faults++;
}

void TdxModule::vcpu_progress(int vcpu) {
  std::lock_guard lock(impl_->mu);
  if (Impl::Vcpu* v = impl_->find_vcpu(vcpu)) v->zero_step_faults = 0;
}

bool TdxModule::zero_step_active(int vcpu) const {
  std::lock_guard lock(impl_->mu);
  const Impl::Vcpu* v = impl_->find_vcpu(vcpu);
  return v && v->zero_step_faults >= Impl::kSteppingEpfThreshold;
}

AcceptResult TdxModule::tdg_mem_page_accept(int vcpu, uint64_t gpa, int tdx_level) {
  return impl_->call(Leaf::TDG_MEM_PAGE_ACCEPT, gpa, tdx_level,
                     [&] { return impl_->page_accept(vcpu, gpa, tdx_level); });
}

}  // namespace mirrormmu::tdx
