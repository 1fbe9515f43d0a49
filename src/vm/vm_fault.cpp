// vCPUs: roots, EPT violations, guest accesses, TD build and dirty logging.
#include <cerrno>

#include "spte/spte.h"
#include "sync/rcu.h"
#include "vm/vm.h"

namespace mirrormmu {

namespace {
// How often a fault is retried before the vCPU gives up and reports it; KVM
// would re-enter the guest (or loop locally for TDX) until a signal arrives.
constexpr int kMaxFaultRetries = 64;

// KVM_LPAGE_MIXED_FLAG: a huge mapping may not straddle private and shared
// gfns, or converting one 4K page would leave the other side mapped.
bool hugepage_has_mixed_attrs(const Memslot& s, Gfn huge_base, PgLevel level) {
  const uint64_t first = huge_base - s.base_gfn;
  const uint8_t a = s.private_attr[first];
  for (uint64_t i = 1; i < pages_per_hpage(level); i++)
    if (s.private_attr[first + i] != a) return true;
  return false;
}

// kvm_mmu_hugepage_adjust() for a shared gfn: the largest level at or below
// what the backing offers whose aligned range lies inside the slot, is not
// dirty-logged and has uniform attributes.
PgLevel host_mapping_level_fits(const Memslot& s, Gfn gfn, PgLevel backing) {
  if (s.flags & kMemLogDirtyPages) return PgLevel::k4K;
  for (PgLevel l = backing; l > PgLevel::k4K; l = lower(l)) {
    const Gfn base = gfn_round_for_level(gfn, l);
    if (base < s.base_gfn || base + pages_per_hpage(l) > s.base_gfn + s.npages) continue;
    if (!hugepage_has_mixed_attrs(s, base, l)) return l;
  }
  return PgLevel::k4K;
}
}

int Vm::vcpu_load_roots(Vcpu& v) {
  // kvm_mmu_load(): a root invalidated under us is dropped and replaced.
  if (v.root && v.root->role.invalid) vcpu_put_roots(v);
  if (int r = mmu_->mmu_topup_memory_caches(v.caches)) return r;
  if (!v.root) v.root = mmu_->kvm_tdp_mmu_alloc_root(v.caches, false);
  if (is_td() && !v.mirror_root) v.mirror_root = mmu_->kvm_tdp_mmu_alloc_root(v.caches, true);
  return (v.root && (!is_td() || v.mirror_root)) ? 0 : -ENOMEM;
}

void Vm::vcpu_put_roots(Vcpu& v) {
  if (v.root) mmu_->kvm_tdp_mmu_put_root(v.root);
  if (v.mirror_root) mmu_->kvm_tdp_mmu_put_root(v.mirror_root);
  v.root = v.mirror_root = nullptr;
}

void Vm::kick_all_vcpus_out() {
  for (auto& v : vcpus_) {
    if (!v->in_guest) continue;
    if (tdx_) tdx_->tdx_vcpu_exit(v->id);
    v->in_guest = false;
  }
}

void Vm::mark_page_dirty(Memslot& s, Gfn gfn) {
  if (!(s.flags & kMemLogDirtyPages)) return;
  const uint64_t i = gfn - s.base_gfn;
  s.dirty_bitmap[i / 64] |= 1ull << (i % 64);
}

ExitReason Vm::vcpu_fault(int vcpu, uint64_t gpa, bool write) {
  if (vcpu < 0 || vcpu >= nr_vcpus() || unusable()) return ExitReason::VmDead;
  Vcpu& v = *vcpus_[vcpu];
  if (bugs_.bugged()) return ExitReason::VmDead;
  stats_.faults++;
  sync::RcuThread rcu_thread;

  KvmPageFault f;
  f.addr = gpa;
  f.gfn = Gfn{(gpa >> kPageShift) & ~gfn_direct_bits_};
  f.write = write;
  f.is_private = is_td() && !(gpa & shared_bit_);
  Memslot* slot = slot_for(f.gfn);

  for (int attempt = 0; attempt < kMaxFaultRetries; attempt++) {
    const uint64_t seq = invalidate_seq_;
    // kvm_mmu_faultin_pfn(), outside mmu_lock.
    PgLevel backing_level = PgLevel::k4K;
    if (f.is_private) {
      // A private access to memory userspace has not made private (or that
      // has no guest_memfd) exits to userspace to convert it.
      if (!slot || !slot->gmem || !slot->private_attr[f.gfn - slot->base_gfn]) return ExitReason::MemoryFault;
      f.pfn = slot->gmem->get_pfn(f.gfn - slot->base_gfn);
      // gmem_max_mapping_level() is 4K for TDX in the baseline.
      f.max_level = PgLevel::k4K;
    } else if (!slot) {
      f.has_slot = false;
      f.max_level = PgLevel::k4K;
    } else {
      if (is_td() && slot->private_attr[f.gfn - slot->base_gfn]) return ExitReason::MemoryFault;
      f.pfn = slot->shared->get_pfn(f.gfn - slot->base_gfn, &backing_level);
      f.max_level = host_mapping_level_fits(*slot, f.gfn, backing_level);
    }
    if (f.has_slot && !f.pfn.valid()) return ExitReason::NoMemory;
    f.req_level = f.goal_level = f.max_level;
    // The pfn of a huge mapping is its base.
    if (f.goal_level > PgLevel::k4K)
      f.pfn = Pfn{f.pfn.v & ~(pages_per_hpage(f.goal_level) - 1)};

    if (vcpu_load_roots(v)) return ExitReason::NoMemory;
    RetPf ret;
    {
      sync::ReadGuard lock(mmu_->mmu_lock());
      // is_page_fault_stale(): an invalidation since faultin, or a root that
      // went invalid, means the pfn may be stale.
      if (seq != invalidate_seq_ || v.root->role.invalid)
        ret = RetPf::Retry;
      else
        ret = mmu_->kvm_tdp_mmu_map(v.caches, v.root, v.mirror_root, f);
    }
    if (ret == RetPf::Fixed && slot && write) mark_page_dirty(*slot, f.gfn);
    if (ret == RetPf::Fixed || ret == RetPf::WriteProtected) {
      stats_.faults_fixed++;
      return ExitReason::None;
    }
    if (ret == RetPf::Spurious) {
      stats_.faults_spurious++;
      return ExitReason::None;
    }
    if (ret == RetPf::Emulate) return ExitReason::Mmio;
    // RET_PF_RETRY: TDX retries private faults locally (zero-step
    // mitigation); a shared fault would re-enter the guest and fault again.
    stats_.fault_retries++;
    if (bugs_.bugged()) return ExitReason::VmDead;
  }
  return ExitReason::Retry;
}

// What the CPU would find walking the direct root for a shared GPA.
bool Vm::hw_translation_ok(Vcpu& v, uint64_t gpa, bool write) {
  if (!v.root) return false;
  sync::RcuReadGuard rcu;
  const Gfn gfn{(gpa >> kPageShift) & ~gfn_direct_bits_};
  TdpIter it(pool(), v.root, PgLevel::k4K, gfn, mmu_->kvm_gfn_root_bits(v.root));
  for (; it.valid && it.gfn < gfn + 1; it.next()) {
    if (!spte::is_shadow_present(it.old_spte)) return false;
    if (spte::is_last(it.old_spte, it.level)) return !write || spte::is_writable(it.old_spte);
  }
  return false;
}

ExitReason Vm::vcpu_access(int vcpu, uint64_t gpa, bool write) {
  if (vcpu < 0 || vcpu >= nr_vcpus() || unusable()) return ExitReason::VmDead;
  Vcpu& v = *vcpus_[vcpu];
  sync::RcuThread rcu_thread;
  stats_.accesses++;
  const bool is_private = is_td() && !(gpa & shared_bit_);
  for (int attempt = 0; attempt < kMaxFaultRetries; attempt++) {
    if (bugs_.bugged()) return ExitReason::VmDead;
    if (!v.in_guest) {
      if (is_td()) {
        if (!tdx_->tdx_vcpu_enter(vcpu)) continue;  // exit handled; try again
        stats_.vp_enters++;
      }
      v.in_guest = true;
    }
    bool ok;
    if (is_private) {
      const uint64_t gpa4k = gpa & ~(kPageSize - 1);
      const auto e = module_->read_entry(gpa4k, 0);
      if (e.state == tdx::SeptState::Mapped) {
        ok = true;
      } else if (e.state == tdx::SeptState::Pending) {
        // The guest takes a #VE and accepts the page.
        const auto a = module_->tdg_mem_page_accept(vcpu, gpa4k, 0);
        stats_.accepts++;
        ok = a.outcome == tdx::AcceptResult::Outcome::Accepted;
      } else {
        ok = false;
      }
    } else {
      ok = hw_translation_ok(v, gpa, write);
    }
    if (ok) return ExitReason::None;
    // EPT violation: exit to KVM, handle the fault, re-enter.
    if (tdx_) tdx_->tdx_vcpu_exit(vcpu);
    v.in_guest = false;
    const ExitReason r = vcpu_fault(vcpu, gpa, write);
    if (r != ExitReason::None) return r;
  }
  return ExitReason::Retry;
}

int Vm::init_mem_region(uint64_t gpa, uint64_t npages) {
  if (!is_td() || unusable()) return -EINVAL;
  if (bugs_.bugged()) return -EIO;
  if (tdx_->td_state() != tdx::TdState::Initialized) return -EINVAL;
  Vcpu& v = *vcpus_[0];
  sync::RcuThread rcu_thread;
  for (uint64_t i = 0; i < npages; i++) {
    const Gfn gfn = Gfn::from_gpa(gpa) + i;
    Memslot* slot = slot_for(gfn);
    if (!slot || !slot->gmem) return -EINVAL;
    // The initial image is private memory from the start.
    slot->private_attr[gfn - slot->base_gfn] = 1;
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
    for (int attempt = 0; attempt < kMaxFaultRetries && ret == RetPf::Retry; attempt++) {
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

int Vm::set_dirty_logging(int slot_id, bool on) {
  Memslot* s = slot_by_id(slot_id);
  if (!s || unusable()) return -EINVAL;
  if (s->gmem) return -EINVAL;  // private memory cannot be dirty-logged
  if (on) {
    s->flags |= kMemLogDirtyPages;
    // kvm_mmu_slot_remove_write_access(): the TDP MMU does it under the
    // shared lock; huge pages are write-protected too and split on the first
    // write fault (the fault now wants 4K).
    bool flush;
    {
      sync::RcuThread rcu_thread;
      sync::ReadGuard lock(mmu_->mmu_lock());
      flush = mmu_->kvm_tdp_mmu_wrprot_slot(s->base_gfn, s->base_gfn + s->npages, PgLevel::k4K);
    }
    if (flush) mmu_->kvm_flush_remote_tlbs();
  } else {
    s->flags &= ~kMemLogDirtyPages;
    std::fill(s->dirty_bitmap.begin(), s->dirty_bitmap.end(), 0);
  }
  return 0;
}

std::optional<std::vector<uint64_t>> Vm::get_dirty_log(int slot_id) {
  Memslot* s = slot_by_id(slot_id);
  if (!s || !(s->flags & kMemLogDirtyPages)) return std::nullopt;
  std::vector<uint64_t> out = s->dirty_bitmap;
  {
    // kvm_arch_mmu_enable_log_dirty_pt_masked(): write-protect what was
    // reported so the next write is seen again.
    sync::RcuThread rcu_thread;
    sync::WriteGuard lock(mmu_->mmu_lock());
    for (size_t w = 0; w < out.size(); w++)
      if (out[w]) mmu_->kvm_tdp_mmu_clear_dirty_pt_masked(s->base_gfn + w * 64, out[w]);
  }
  mmu_->kvm_flush_remote_tlbs();
  std::fill(s->dirty_bitmap.begin(), s->dirty_bitmap.end(), 0);
  stats_.dirty_log_gets++;
  return out;
}

}  // namespace mirrormmu
