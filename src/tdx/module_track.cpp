// SPDX-License-Identifier: MIT
// TLB tracking and the vCPU side: TDH.MEM.TRACK, TDH.VP.ENTER / TD exit,
// and the guest's TDG.MEM.PAGE.ACCEPT.
//
// TD_EPOCH starts at 1 (MNG.INIT). VP.ENTER counts the vCPU in
// refcount[epoch & 1] until it exits; TRACK advances the epoch only once no
// vCPU from the previous epoch is still inside, so two parities suffice.
#include <algorithm>

#include <fmt/format.h>

#include "tdx/module_impl.h"

namespace mirrormmu::tdx {

namespace {
constexpr OpStates kRunnable{OpState::Runnable};
}  // namespace

Status TdxModule::Impl::mem_track() {
  if (Status s = injected(Operand::TD_EPOCH)) return s;
  LockSet locks(*this);
  if (Status s = td_prologue(locks, Operand::RCX, LockMode::Shared, kBuildOrRun)) return s;
  if (Status s = locks.epoch(LockMode::Exclusive)) return s;
  if (!m.cfg_.lax_tlb_tracking && epoch_refcount[(m.td_epoch_ - 1) & 1].load() != 0) return TDX_PREVIOUS_TLB_EPOCH_BUSY;
  ++m.td_epoch_;
  return TDX_SUCCESS;
}

// The order is the module's: TDVPR, TDR (shared), op-state, then the TD
// epoch lock only for as long as it takes to count the vCPU in, and only
// after that the S-EPT tree lock for the zero-step filter. The two are never
// held together. The TDR and TDVPR stay locked while the vCPU is in the
// guest: anything that needs the TDR exclusively (PAGE.ADD, VPFLUSHDONE,
// KEY.FREEID) gets BUSY until it exits.
Status TdxModule::Impl::vp_enter(int vcpu, uint64_t* exit_gpa) {
  LockSet locks(*this);
  Vcpu* v = find_vcpu(vcpu);
  if (v == nullptr) return with_operand(TDX_PAGE_METADATA_INCORRECT, Operand::RCX);
  // A vCPU inside the guest holds its TDVPR: a second entry cannot take it.
  if (v->in_guest) return with_operand(TDX_OPERAND_BUSY, Operand::RCX);
  // The zero-step filter below locks the S-EPT tree exclusively, which a
  // call may try only holding the model's lock exclusively.
  if (!v->last_epf_gpas.empty() && !mu.held_exclusive_by_me()) return kRerunExclusive;
  if (Status s = td_prologue(locks, Operand::TDR, LockMode::Shared, kRunnable)) return s;
  if (!v->initialized) return with_operand(TDX_OP_STATE_INCORRECT, Operand::TDVPR);
  if (Status s = locks.epoch(LockMode::Shared)) return s;
  const uint64_t epoch = m.td_epoch_;
  epoch_refcount[epoch & 1].fetch_add(1, std::memory_order_relaxed);
  locks.release_epoch();
  const auto revert_tlb_tracking_state = [&] {
    epoch_refcount[epoch & 1].fetch_sub(1, std::memory_order_relaxed);
  };

  // The stepping filter: with the tree locked exclusively (AUG, SEPT.ADD,
  // BLOCK meanwhile get BUSY, and if the lock is taken the entry fails with
  // BUSY), re-walk every logged GPA. One that would still fault means the
  // guest is being single-stepped through EPT violations: the guest is not
  // entered, and the host sees an EPT-violation exit at that GPA instead.
  if (!v->last_epf_gpas.empty()) {
    if (Status s = locks.sept_tree(LockMode::Exclusive)) {
      revert_tlb_tracking_state();
      return s;
    }
    for (uint64_t gpa : v->last_epf_gpas) {
      // is_epf_expected(): the walk would not reach a guest-usable leaf.
      // A PENDING leaf is usable: the guest takes #VE and accepts it.
      const SeptWalk w = tree.walk(gpa, 0);
      const SeptState st = w.state();
      if (st == SeptState::Mapped || st == SeptState::Pending) continue;
      revert_tlb_tracking_state();
      if (exit_gpa) *exit_gpa = gpa;
      return TDX_EXIT_EPT_VIOLATION;
    }
  }
  // The TLB flush of TD entry: whatever the vCPU cached in an older epoch
  // may predate a block that epoch's TRACK covered.
  if (v->tlb_epoch != epoch) {
    v->tlb.flush();
    v->tlb_epoch = epoch;
  }
  v->epoch = epoch;
  std::atomic_ref<bool>(v->in_guest).store(true, std::memory_order_release);
  v->associated = true;
  // Held past the call, released by td_exit; we hold it shared already, so
  // no exclusive holder can be in the way.
  (void)tdr_lock.try_lock(LockMode::Shared);
  return TDX_SUCCESS;
}

void TdxModule::Impl::td_exit(int vcpu) {
  Vcpu* v = find_vcpu(vcpu);
  if (v == nullptr || !v->guest()) return;
  // Out of the guest before out of the epoch count: a REMOVE on another
  // thread (no longer kept out by the model's lock) that finds the count
  // drained must also find the vCPU outside, or it would take a TLB that the
  // next entry flushes for one still in use.
  std::atomic_ref<bool>(v->in_guest).store(false, std::memory_order_release);
  epoch_refcount[v->epoch & 1].fetch_sub(1, std::memory_order_release);
  tdr_lock.unlock(LockMode::Shared);
}

AcceptResult TdxModule::Impl::page_accept(int vcpu, uint64_t gpa, int level) {
  using Outcome = AcceptResult::Outcome;
  const auto to_guest = [](Status s) { return AcceptResult{Outcome::Status, s, 0, SeptState::Free}; };
  const auto exit_to_host = [](const SeptWalk& w) {
    // The TDCALL never completes on an EPT violation: the vCPU exits to the
    // host, and the exit's value stands as the ACCEPT's status in traces.
    return AcceptResult{Outcome::EptViolation, TDX_EXIT_EPT_VIOLATION, w.level, w.state()};
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
      w.set(sept::with_state(w.value(), SeptState::Mapped));
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

void TdxModule::Impl::tlb_check_gone(uint64_t gpa, Pfn pfn, uint64_t n, const char* leaf) {
  if (!tlb_violation.empty()) return;
  for (const auto& [id, vp] : vcpus) {
    const Vcpu& v = *vp;
    // Out of the guest with an older epoch, the next entry flushes first.
    const bool in_guest = v.guest();
    if (!in_guest && v.tlb_epoch != m.td_epoch_) continue;
    uint64_t at = 0;
    if (const uint64_t* frame = v.tlb.find_frame_in(gpa, pfn.v, n, &at)) {
      tlb_violation = fmt::format(
          "tlb_use_after_free: vCPU {} ({}, TLB of epoch {}, TD epoch {}) still translates private gpa {:#x} to pfn "
          "{:#x} after {} gave the page back to the host",
          id, in_guest ? "in the guest" : "outside", v.tlb_epoch, m.td_epoch_.load(), at, *frame, leaf);
      return;
    }
  }
}

// ---- public entry points ----------------------------------------------------------

Status TdxModule::tdh_mem_track() {
  return impl_->call(Leaf::MEM_TRACK, 0, 0, [&] { return impl_->mem_track(); });
}

Status TdxModule::tdh_vp_enter(int vcpu, uint64_t* exit_gpa) {
  return impl_->call(Leaf::VP_ENTER, 0, 0, [&] { return impl_->vp_enter(vcpu, exit_gpa); });
}

// No module lock: what a TD exit changes is atomic (the epoch count, the
// vCPU's in_guest, its TDR hold), and the readers of it, TRACK, the BEPOCH
// check and VP.FLUSH, read it atomically. It still names the lock, so that
// partial-order reduction keeps ordering it against those calls.
void TdxModule::td_exit(int vcpu) {
  sync::sched_touch(&impl_->mu);
  impl_->td_exit(vcpu);
}

// The zero-step state is the vCPU's own: only its thread changes it (here
// and in vcpu_progress) or reads it to decide (VP.ENTER), as KVM's vCPU
// mutex has it. The model's lock would order nothing more, and these two run
// on every guest access.
// Each still names the lock for partial-order reduction, as when it took it.
void TdxModule::vcpu_ept_violation(int vcpu, uint64_t gpa, uint64_t rip) {
  sync::sched_touch(&impl_->mu);
  Impl::Vcpu* v = impl_->find_vcpu(vcpu);
  if (v == nullptr) return;
  // A fault at another instruction: the guest moved on since the last one.
  if (rip != v->epf_rip) {
    v->epf_rip = rip;
    v->possibly_epf_stepping = 0;
    v->last_epf_gpas.clear();
  }
  if (v->possibly_epf_stepping < Impl::kSteppingEpfThreshold) {
    v->possibly_epf_stepping++;
    return;
  }
  gpa &= ~(kPageSize - 1);
  auto& list = v->last_epf_gpas;
  if (list.size() < Impl::kEpfGpaListSize && std::find(list.begin(), list.end(), gpa) == list.end())
    list.push_back(gpa);
}

void TdxModule::vcpu_progress(int vcpu) {
  sync::sched_touch(&impl_->mu);
  if (Impl::Vcpu* v = impl_->find_vcpu(vcpu)) {
    v->possibly_epf_stepping = 0;
    v->last_epf_gpas.clear();
  }
}

bool TdxModule::zero_step_active(int vcpu) const {
  std::shared_lock lock(impl_->mu);
  const Impl::Vcpu* v = impl_->find_vcpu(vcpu);
  return v && !v->last_epf_gpas.empty();
}

void TdxModule::set_td_fatal() {
  std::lock_guard lock(impl_->mu);
  impl_->fatal = true;
}

TdxModule::EntryView TdxModule::cpu_access(int vcpu, uint64_t gpa) {
  // A TLB hit needs no lock: only this vCPU's thread fills or flushes its
  // TLB and moves it in and out of the guest, and a REMOVE that looks at the
  // TLB meanwhile only reads it. The walk takes the model's lock shared (S-EPT
  // tables come and go under it exclusively), beside the other vCPUs'
  // accesses, AUGs and ACCEPTs.
  sync::sched_touch(&impl_->mu);
  const uint64_t gpa4k = gpa & ~(kPageSize - 1);
  Impl::Vcpu* v = impl_->find_vcpu(vcpu);
  if (v == nullptr || !v->in_guest) return EntryView{gpa4k, 0, SeptState::Free, kInvalidPfn};
  if (const uint64_t* f = v->tlb.find(gpa4k)) return EntryView{gpa4k, 0, SeptState::Mapped, Pfn{*f}};
  std::shared_lock lock(impl_->mu);
  const SeptWalk w = impl_->tree.walk(gpa4k, 0);
  const int level = w.reached ? 0 : w.level;
  if (!is_leaf_state(w.state())) return EntryView{gpa4k, level, SeptState::Free, kInvalidPfn};
  if (w.state() != SeptState::Mapped) return EntryView{gpa4k, level, w.state(), w.pfn()};
  const uint64_t base = gpa4k & ~(sept::level_bytes(level) - 1);
  const Pfn frame{w.pfn().v + ((gpa4k - base) >> kPageShift)};
  v->tlb.insert(gpa4k, frame.v);
  return EntryView{gpa4k, 0, SeptState::Mapped, frame};
}

std::string TdxModule::tlb_violation() const {
  std::shared_lock lock(impl_->mu);
  return impl_->tlb_violation;
}

AcceptResult TdxModule::tdg_mem_page_accept(int vcpu, uint64_t gpa, int tdx_level) {
  return impl_->call(Leaf::TDG_MEM_PAGE_ACCEPT, gpa, tdx_level,
                     [&] { return impl_->page_accept(vcpu, gpa, tdx_level); });
}

}  // namespace mirrormmu::tdx
