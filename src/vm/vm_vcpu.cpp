// SPDX-License-Identifier: MIT
// vCPUs: roots, EPT violations (kvm_mmu_page_fault), guest accesses, and
// getting vCPUs out of guest mode.
#include <fmt/format.h>

#include <cerrno>
#include <utility>

#include "base/running_vcpu.h"
#include "mmu/tdp_iter.h"
#include "spte/spte.h"
#include "sync/rcu.h"
#include "sync/spte_atomic.h"
#include "vm/vm.h"

namespace mirrormmu {

namespace {

// How often a shared fault is retried before the vCPU gives up and reports
// it; KVM re-enters the guest, which faults again.
constexpr uint64_t kMaxFaultRetries = 64;
// TDX's local retry for private faults has no bound in the kernel (it ends on
// progress, a pending event or signal, a dead VM, or a memslot being
// deleted). On native threads this stands in for the signal a stuck vCPU
// task eventually gets; under the deterministic engine the loop is as
// unbounded as the kernel's and the step limit reports the livelock.
constexpr uint64_t kMaxLocalRetries = uint64_t(1) << 16;
// Entries refused (BUSY, a zap in progress) are retried as KVM retries them,
// without bound under the deterministic engine; natively this many.
constexpr uint64_t kMaxRefusedEntries = uint64_t(1) << 16;

// kvm_mmu_hugepage_adjust() for a shared gfn: the largest level at or below
// what the backing offers whose aligned range lies inside the slot, is not
// dirty-logged and has uniform attributes.
PgLevel largest_uniform_level(const Memslot& s, Gfn gfn, PgLevel backing) {
  for (PgLevel l = backing; l > PgLevel::k4K; l = lower(l)) {
    if (s.hugepage_uniform(gfn, l)) return l;
  }
  return PgLevel::k4K;
}
inline PgLevel host_mapping_level_fits(const Memslot& s, Gfn gfn, PgLevel backing) {
  if (backing == PgLevel::k4K || (s.flags & kMemLogDirtyPages)) return PgLevel::k4K;
  return largest_uniform_level(s, gfn, backing);
}

}  // namespace

int Vm::vcpu_load_roots_slow(Vcpu& v) {
  // kvm_mmu_load(): a root invalidated under us is dropped and replaced.
  if (v.root && v.root->role.invalid) vcpu_put_roots(v);
  if (int r = mmu_->mmu_topup_memory_caches(v.caches)) return r;
  if (!v.root) {
    v.root = mmu_->kvm_tdp_mmu_alloc_root(v.caches, false);
    // kvm_mmu_load(): a root of unknown provenance, so the CPU's cached
    // translations for the current context go (for a TD,
    // tdx_flush_tlb_current()'s ept_sync_global()).
    if (v.root) hw_.flush_current(v.id);
  }
  if (is_td() && !v.mirror_root) v.mirror_root = mmu_->kvm_tdp_mmu_alloc_root(v.caches, true);
  return (v.root && (!is_td() || v.mirror_root)) ? 0 : -ENOMEM;
}

void Vm::vcpu_put_roots(Vcpu& v) {
  if (v.root) mmu_->kvm_tdp_mmu_put_root(v.root);
  if (v.mirror_root) mmu_->kvm_tdp_mmu_put_root(v.mirror_root);
  v.root = v.mirror_root = nullptr;
}

void Vm::exit_guest(Vcpu& v) {
  sync::sched_touch(&v);
  if (!v.in_guest.load()) return;
  if (tdx_) tdx_->tdx_vcpu_exit(v.id);
  // Release, not sequentially consistent: a kicker waits for this store and
  // then goes on, and nothing after it here looks at what a kicker stored
  // (the Dekker pair is the entry's, below). The exchanges of an exit and
  // an entry were most of vcpu_access()'s own 4% of a checked td-life run.
  v.in_guest.store(false, std::memory_order_release);
  v.kick.store(false, std::memory_order_release);
  sync::wake_event(&v);
}

void Vm::vcpu_exit(int vcpu) {
  if (vcpu >= 0 && vcpu < nr_vcpus()) exit_guest(*vcpus_[vcpu]);
}

VmOpStats Vm::op_stats() const {
  VmOpStats o;
  for (const auto& v : vcpus_) {
    o.faults += v->faults.load();
    o.faults_fixed += v->faults_fixed.load();
    o.faults_spurious += v->faults_spurious.load();
    o.fault_retries += v->fault_retries.load();
    o.accesses += v->accesses.load();
    o.accepts += v->accepts.load();
    o.accept_mismatches += v->accept_mismatches.load();
    o.vp_enters += v->vp_enters.load();
  }
  o.kicks = stats_.kicks.load();
  o.conversions = stats_.conversions.load();
  o.memslot_adds = stats_.memslot_adds.load();
  o.memslot_deletes = stats_.memslot_deletes.load();
  o.dirty_log_gets = stats_.dirty_log_gets.load();
  o.init_mem_pages = stats_.init_mem_pages.load();
  return o;
}

void Vm::kick_all_vcpus_out() {
  stats_.kicks.fetch_add(1);
  for (auto& v : vcpus_) {
    if (!vcpus_threaded_) {
      exit_guest(*v);
      continue;
    }
    // An IPI, then wait for the acknowledgement: the vCPU leaves guest mode
    // at its next instruction boundary.
    sync::sched_touch(v.get());
    if (!v->in_guest.load()) continue;
    v->kick.store(true);
    while (v->in_guest.load()) sync::wait_event(v.get());
  }
}

void Vm::mark_page_dirty(Memslot& s, Gfn gfn) {
  if (s.flags & kMemLogDirtyPages) s.mark_dirty(gfn);
}

// One try of kvm_mmu_do_page_fault() for `f` (addr, gfn, write, is_private
// and prefetch filled in): the pfn looked up, the roots loaded, the map
// under mmu_lock. None with the RET_PF_* in *ret, or why KVM leaves the
// fault without mapping.
[[gnu::always_inline]] inline ExitReason Vm::tdp_fault_try(Vcpu& v, KvmPageFault& f, Memslot* slot,
                                                          PgLevel accept_level, RetPf* ret) {
  // mmu_invalidate_retry(): sample the sequence before looking up the pfn.
  const uint64_t seq = invalidate_seq_.load();
  // kvm_mmu_faultin_pfn(), outside mmu_lock.
  PgLevel backing_level = PgLevel::k4K;
  f.has_slot = true;
  if (f.is_private) {
    // A private access to memory userspace has not made private (or that
    // has no guest_memfd) exits to userspace to convert it.
    if (!slot || !slot->gmem || !slot->is_private(f.gfn)) return ExitReason::MemoryFault;
    f.pfn = slot->gmem->get_pfn(f.gfn - slot->base_gfn, &backing_level);
  } else if (!slot) {
    f.has_slot = false;
  } else {
    if (is_td() && slot->is_private(f.gfn)) return ExitReason::MemoryFault;
    // hva_to_pfn(): a write the host VMA refuses is KVM_PFN_ERR_FAULT
    // (-EFAULT out of KVM_RUN); a read of read-only memory maps it
    // read-only. Read after the sequence sample, so an mprotect racing
    // with this fault makes it retry.
    const HostProt prot = slot->shared->prot(f.gfn - slot->base_gfn);
    if (prot == HostProt::None || (f.write && prot == HostProt::ReadOnly)) return ExitReason::HostFault;
    f.map_writable = prot == HostProt::ReadWrite;
    f.pfn = slot->shared->get_pfn(f.gfn - slot->base_gfn, &backing_level);
  }
  if (f.has_slot && !f.pfn.valid()) return ExitReason::NoMemory;

  if (vcpu_load_roots(v)) return ExitReason::NoMemory;
  if (slot && slot->is_invalid()) {
    // kvm_mmu_faultin_pfn(): the slot is being deleted or moved; retry
    // until its mappings are gone and the new memslots are in place.
    *ret = RetPf::Retry;
  } else {
    sync::ReadGuard lock(mmu_->mmu_lock());
    // is_page_fault_stale(): an invalidation of this gfn in progress, one
    // completed since the pfn lookup, or a root gone invalid.
    if (mmu_invalidate_retry_gfn(seq, f.gfn) || v.root->role.invalid) {
      *ret = RetPf::Retry;
    } else {
      // kvm_mmu_hugepage_adjust(), first thing in kvm_tdp_mmu_map(): under
      // mmu_lock, so the attributes, the dirty-log flag and the guest's
      // huge-page inhibit it reads cannot change under the mapping (each
      // writer takes the lock for write).
      if (!f.has_slot)
        f.max_level = PgLevel::k4K;
      else if (f.is_private)
        f.max_level = private_max_level(*slot, f.gfn, backing_level, accept_level);
      else
        f.max_level = host_mapping_level_fits(*slot, f.gfn, backing_level);
      f.req_level = f.goal_level = f.max_level;
      *ret = mmu_->kvm_tdp_mmu_map(v.caches, v.root, v.mirror_root, f);
    }
    // make_spte() marks the page dirty whenever it installs a writable
    // SPTE in a dirty-logged slot, read fault or not (the next write would
    // not fault), still under mmu_lock so a harvest cannot slip in between.
    if (*ret == RetPf::Fixed && slot && f.map_writable) mark_page_dirty(*slot, f.gfn);
  }
  return ExitReason::None;
}

ExitReason Vm::tdp_fault_once(Vcpu& v, KvmPageFault& f, Memslot* slot, PgLevel accept_level, RetPf* ret) {
  return tdp_fault_try(v, f, slot, accept_level, ret);
}

ExitReason Vm::vcpu_fault(int vcpu, uint64_t gpa, bool write, PgLevel accept_level) {
  if (vcpu < 0 || vcpu >= nr_vcpus() || unusable()) return ExitReason::VmDead;
  Vcpu& v = *vcpus_[vcpu];
  if (bugs_.bugged()) return ExitReason::VmDead;
  VcpuRunGuard run(*this, v);
  v.faults.inc();
  VcpuLoadGuard loaded(vcpu);
  sync::RcuThread rcu_thread;
  sync::ReadGuard slots(slots_lock_);

  KvmPageFault f;
  f.addr = gpa;
  f.gfn = Gfn{(gpa >> kPageShift) & ~gfn_direct_bits_};
  f.write = write;
  f.is_private = is_td() && !(gpa & shared_bit_);
  Memslot* slot = slot_for(f.gfn);
  // tdx_handle_ept_violation(): private faults retry locally, with SRCU
  // held, rather than re-entering the guest (zero-step mitigation).
  const bool local_retry = f.is_private;
  const uint64_t max_attempts =
      !local_retry ? kMaxFaultRetries : sync::sched_steered() ? UINT64_MAX : kMaxLocalRetries;

  for (uint64_t attempt = 0; attempt < max_attempts; attempt++) {
    RetPf ret;
    if (const ExitReason e = tdp_fault_try(v, f, slot, accept_level, &ret); e != ExitReason::None) return e;
    if (ret == RetPf::Fixed || ret == RetPf::WriteProtected) {
      v.faults_fixed.inc();
      return ExitReason::None;
    }
    if (ret == RetPf::Spurious) {
      v.faults_spurious.inc();
      return ExitReason::None;
    }
    if (ret == RetPf::Emulate) return ExitReason::Mmio;
    // RET_PF_RETRY: TDX retries private faults locally (zero-step
    // mitigation); a shared fault would re-enter the guest and fault again.
    v.fault_retries.inc();
    if (bugs_.bugged()) return ExitReason::VmDead;
    // "Bail if the memslot is invalid, i.e. is being deleted, as faulting in
    // will never succeed and this task needs to drop SRCU in order to let
    // memslot deletion complete": back to the guest, which faults again.
    if (local_retry && slot && slot->is_invalid() && !cfg_.what_if.no_memslot_invalid_bailout)
      return ExitReason::None;
    sync::cond_resched_spin(&v);
  }
  return ExitReason::Retry;
}

// The guest touches a private GPA: fine if the S-EPT leaf covering it (at
// whatever level) is MAPPED; a PENDING one is accepted first, at the guest's
// level. False means an EPT violation for KVM, with the accept level that
// caused it in *fault_cap (k1G for an ordinary access). Retry: KVM handled
// the exit itself (a split), the guest just runs again.
Vm::GuestAccess Vm::guest_private_access(Vcpu& v, uint64_t gpa, PgLevel accept_level, PgLevel* fault_cap) {
  const uint64_t gpa4k = gpa & ~(kPageSize - 1);
  const auto e = module_->cpu_access(v.id, gpa4k);
  if (e.state == tdx::SeptState::Mapped) return GuestAccess::Ok;
  if (e.state != tdx::SeptState::Pending) return GuestAccess::Fault;
  // The guest takes a #VE and accepts; a 2M accept of memory the host
  // mapped at 4K fails with a size mismatch and the guest retries at 4K, as
  // it does for the rest of that 2M.
  if (accept_level > PgLevel::k4K && accept_level == v.accept_fallback_level.load(std::memory_order_relaxed) &&
      (gpa & ~(pages_per_hpage(accept_level) * kPageSize - 1)) == v.accept_fallback_base.load(std::memory_order_relaxed))
    accept_level = PgLevel::k4K;
  for (PgLevel level = accept_level;; level = PgLevel::k4K) {
    const uint64_t span = pages_per_hpage(level) * kPageSize;
    const auto a = module_->tdg_mem_page_accept(v.id, gpa & ~(span - 1), tdx::tdx_level(level));
    v.accepts.inc();
    using Outcome = tdx::AcceptResult::Outcome;
    // The instruction that took the #VE runs again, through the TLB.
    const auto retried = [&] {
      return module_->cpu_access(v.id, gpa4k).state == tdx::SeptState::Mapped ? GuestAccess::Ok : GuestAccess::Fault;
    };
    if (a.outcome == Outcome::Accepted) return retried();
    if (a.outcome == Outcome::Status) {
      const tdx::Status st = tdx::status_base(a.status);
      if (st == tdx::TDX_PAGE_ALREADY_ACCEPTED) return retried();
      if (st == tdx::TDX_PAGE_SIZE_MISMATCH && level > PgLevel::k4K) {
        v.accept_fallback_level.store(level, std::memory_order_relaxed);
        v.accept_fallback_base.store(gpa & ~(span - 1), std::memory_order_relaxed);
        continue;
      }
      return GuestAccess::Fault;
    }
    // The exit of an accept below the size of a PENDING mapping: KVM splits
    // it (tdx_handle_mismatched_accept), and the guest retries the accept.
    // It goes through the module's ACCEPT exit path, which zero-step
    // mitigation does not count.
    if (tdx::is_leaf_state(a.state) && a.walk_level > tdx::tdx_level(level)) {
      exit_guest(v);
      // A failed split (no memory) leaves the mapping as it was: the accept
      // exits again and the split is retried.
      sync::ReadGuard slots(slots_lock_);
      handle_mismatched_accept(v, Gfn::from_gpa(gpa4k), level);
      return GuestAccess::Retry;
    }
    *fault_cap = level;
    return GuestAccess::Fault;
  }
}

HwWalk Vm::hw_walk(Vcpu& v, Gfn gfn) { return walk_root(v.root, gfn); }

int Vm::mapped_level(int vcpu, uint64_t gpa) {
  if (vcpu < 0 || vcpu >= nr_vcpus()) return 0;
  Vcpu& v = *vcpus_[vcpu];
  const bool priv = is_td() && !(gpa & shared_bit_);
  const HwWalk w = walk_root(priv ? v.mirror_root : v.root, Gfn{(gpa >> kPageShift) & ~gfn_direct_bits_});
  return w.leaf ? w.level : 0;
}

HwWalk Vm::walk_root(MmuPage* root, Gfn gfn) {
  HwWalk w;
  if (!root) return w;
  sync::RcuReadGuard rcu;
  // The direct root of a TD maps gfns with the shared bit set.
  const uint64_t index_gfn = gfn.v | mmu_->kvm_gfn_root_bits(root);
  Pfn table = root->spt_pfn;
  for (PgLevel level = root->role.level;; level = lower(level)) {
    w.tables[w.ntables++] = table.v;
    uint64_t* sptep = pool().page_ptr(table) + spte_index(index_gfn, level);
    // The CPU's read is no scheduling point; the step that makes it names it.
    sync::sched_touch(sptep);
    const uint64_t s = sync::spte_ref(sptep).load(std::memory_order_acquire);
    if (!spte::is_shadow_present(s)) return w;
    if (!spte::is_last(s, level)) {
      table = spte::to_pfn(s);
      continue;
    }
    w.leaf = true;
    w.level = lvl(level);
    w.pfn = spte::to_pfn(s).v + (gfn.v & (pages_per_hpage(level) - 1));
    w.writable = spte::is_writable(s);
    // No Dirty bit to set first: a write goes straight through.
    w.dirty = true;
    return w;
  }
}

bool Vm::hw_access(Vcpu& v, Gfn gfn, bool write, bool* reload) {
  // The access is one instruction: a flush's IPI lands before or after it,
  // so guest mode for the TLBs spans just this.
  if (!hw_.enter(v.id)) {
    *reload = true;
    return false;
  }
  bool ok = hw_.tlb_hit(v.id, gfn.v, write);
  if (!ok) {
    const HwWalk w = hw_walk(v, gfn);
    hw_.fill(v.id, gfn.v, w);
    ok = w.leaf && (!write || w.writable);
  }
  hw_.exit(v.id);
  return ok;
}

void Vm::flush(Gfn start, uint64_t npages) {
  if (npages)
    hw_.flush_range(start.v, npages);
  else
    hw_.flush_all();
}

void Vm::check_no_translations(Gfn start, Gfn end, const char* after) {
  for (const GuestHw::Cached& c : hw_.translations(start.v, end.v)) {
    hw_.report(fmt::format("tlb_stale: vCPU {} still translates shared gfn {:#x} to pfn {:#x}{} after {} returned; "
                           "the tables map nothing there",
                           c.vcpu, c.gfn, c.pfn, c.writable ? " (writable)" : "", after));
    return;
  }
}

ExitReason Vm::vcpu_access(int vcpu, uint64_t gpa, bool write, PgLevel accept_level) {
  if (vcpu < 0 || vcpu >= nr_vcpus() || unusable()) return ExitReason::VmDead;
  Vcpu& v = *vcpus_[vcpu];
  VcpuRunGuard run(*this, v);
  VcpuLoadGuard loaded(vcpu);
  sync::RcuThread rcu_thread;
  // Each access is one guest instruction; its number stands for the RIP.
  const uint64_t rip = v.accesses.inc();
  const bool is_private = is_td() && !(gpa & shared_bit_);
  // What the attempts ran into, for the report if the vCPU gives up.
  struct {
    uint64_t refused = 0, refused_busy = 0, zero_step_exits = 0, split_retries = 0, faults = 0;
    tdx::Status last_busy = 0;
  } seen;
  for (uint64_t attempt = 0; attempt < kMaxFaultRetries; attempt++) {
    // An instruction boundary: another thread may run here, and a pending
    // kick takes the vCPU out of the guest.
    sync::sched_point(sync::PointKind::InstructionBoundary, &v);
    if (v.kick.load()) exit_guest(v);
    if (bugs_.bugged()) {
      exit_guest(v);
      return ExitReason::VmDead;
    }
    if (!v.in_guest.load()) {
      // vcpu->mode = IN_GUEST_MODE comes before TDH.VP.ENTER: a kick from
      // here on waits until the vCPU is back out, so it also waits out an
      // entry still inside the module (holding its locks).
      // Serviced on entry. The store of in_guest below is the one that
      // must be sequentially consistent: against a kicker's store of kick
      // and load of in_guest, so that one of the two sees the other.
      v.kick.store(false, std::memory_order_relaxed);
      v.in_guest.store(true);
      if (is_td()) {
        const tdx::TdxOps::VcpuEntry e = tdx_->tdx_vcpu_enter(vcpu);
        if (e.kind != tdx::TdxOps::VcpuEntry::Entered) {
          v.in_guest.store(false, std::memory_order_release);
          sync::wake_event(&v);
          if (e.kind == tdx::TdxOps::VcpuEntry::Error) return ExitReason::InternalError;
          if (e.kind == tdx::TdxOps::VcpuEntry::NotRunnable) continue;
          if (e.kind == tdx::TdxOps::VcpuEntry::EptViolation) {
            seen.zero_step_exits++;
            // The data_write bit is all the synthetic exit qualification has.
            const ExitReason r = vcpu_fault(vcpu, e.gpa, true, PgLevel::k1G);
            if (r != ExitReason::None) return r;
            continue;
          }
          // EXIT_FASTPATH_EXIT_HANDLED: out of guest mode (so a kick's IPI
          // can land), wait for a zap to finish, and enter again. KVM never
          // gives up on this, however long a TRACK or a zero-step filter
          // keeps VP.ENTER busy, so it does not count as an attempt here
          // either; only the native safety net bounds it.
          seen.refused++;
          if (e.status) {
            seen.refused_busy++;
            seen.last_busy = e.status;
          }
          tdx_->wait_for_zap_done();
          if (seen.refused < kMaxRefusedEntries || sync::sched_steered()) attempt--;
          sync::cond_resched_spin(&v);
          continue;
        }
        v.vp_enters.inc();
      }
    }
    bool ok;
    PgLevel fault_cap = PgLevel::k1G;
    if (is_private) {
      const GuestAccess g = guest_private_access(v, gpa, accept_level, &fault_cap);
      if (g == GuestAccess::Retry) {
        seen.split_retries++;
        continue;
      }
      ok = g == GuestAccess::Ok;
    } else {
      bool reload = false;
      ok = hw_access(v, Gfn{(gpa >> kPageShift) & ~gfn_direct_bits_}, write, &reload);
      if (reload) {
        // KVM_REQ_MMU_FREE_OBSOLETE_ROOTS, handled outside the guest (the
        // new root's load may wait for mmu_lock, held by a zap that waits
        // for this vCPU to leave the TD).
        exit_guest(v);
        if (vcpu_load_roots(v)) return ExitReason::NoMemory;
        continue;
      }
    }
    if (ok) {
      if (module_) module_->vcpu_progress(vcpu);
      return ExitReason::None;
    }
    // EPT violation: exit to KVM, handle the fault, re-enter.
    if (module_ && is_private) module_->vcpu_ept_violation(vcpu, gpa, rip);
    exit_guest(v);
    seen.faults++;
    const ExitReason r = vcpu_fault(vcpu, gpa, write, fault_cap);
    if (r != ExitReason::None) return r;
  }
  exit_guest(v);
  {
    std::lock_guard g(giveup_mu_);
    giveup_report_ = fmt::format(
        "vCPU{} gave up on gpa {:#x} after {} attempts: {} entries refused ({} by VP.ENTER BUSY{}), {} zero-step "
        "exits, {} accepts retried after a split, {} EPT violations handled by KVM, after each of which the "
        "access faulted again",
        vcpu, gpa, kMaxFaultRetries, seen.refused, seen.refused_busy,
        seen.last_busy ? ", last " + tdx::status_str(seen.last_busy) : std::string(), seen.zero_step_exits,
        seen.split_retries, seen.faults);
  }
  return ExitReason::Retry;
}

std::string Vm::take_giveup_report() {
  std::lock_guard g(giveup_mu_);
  return std::exchange(giveup_report_, std::string());
}

VcpuRunGuard::VcpuRunGuard(Vm& vm, Vcpu& v) : v_(v) {
  // A plain load and store, not a locked exchange: exact when one thread
  // runs at a time (the deterministic engine), and natively two threads
  // inside at once for the length of a fault are all but sure to see each
  // other within a few.
  const uint32_t me = detail::percpu_shard() + 1;
  const uint32_t inside = v.runner.load(std::memory_order_relaxed);
  if (inside == me) return;
  if (inside != 0) vm.note_vcpu_mutex_violation(v.id, inside, me);
  v.runner.store(me, std::memory_order_relaxed);
  outer_ = true;
}

void Vm::note_vcpu_mutex_violation(int vcpu, uint32_t inside, uint32_t coming) {
  std::lock_guard g(giveup_mu_);
  if (vcpu_mutex_report_.empty())
    vcpu_mutex_report_ = fmt::format(
        "vcpu_mutex: thread #{} ran vCPU {} while thread #{} was running it: KVM's vcpu->mutex lets one "
        "ioctl at a time in, and vcpu->stat and the guest's instruction count are written as if it did",
        coming, vcpu, inside);
}

std::string Vm::vcpu_mutex_violation() const {
  std::lock_guard g(giveup_mu_);
  return vcpu_mutex_report_;
}

}  // namespace mirrormmu
