// SPDX-License-Identifier: MIT
// VM creation, memslots, attributes and teardown.
#include "vm/vm.h"

#include <algorithm>
#include <cerrno>

#include "spte/spte.h"
#include "sync/rcu.h"

namespace mirrormmu {

const char* exit_reason_name(ExitReason r) {
  switch (r) {
    case ExitReason::None: return "none";
    case ExitReason::MemoryFault: return "memory_fault";
    case ExitReason::Mmio: return "mmio";
    case ExitReason::NoMemory: return "enomem";
    case ExitReason::VmDead: return "vm_dead";
    case ExitReason::Retry: return "retry";
    case ExitReason::InternalError: return "internal_error";
    case ExitReason::HostFault: return "efault";
  }
  return "?";
}

std::string vm_config_refusal(const VmConfig& cfg) {
  const DesignInfo* d = find_design(cfg.design);
  if (!d) return "unknown design '" + cfg.design + "'";
  if (cfg.huge_pages && cfg.type == VmType::Td) {
    const auto design = d->make();
    if (!design->supports_mirror_huge())
      return "design '" + cfg.design + "' cannot map private huge pages: " + std::string(design->mirror_huge_refusal());
  }
  return what_if_refusal(cfg.what_if, cfg.design, cfg.huge_pages);
}

Vm::Vm(const VmConfig& cfg, FaultInjector* inject)
    : cfg_(cfg), inject_(inject), hw_(std::max(cfg.nr_vcpus, 1)) {
  pool_ = std::make_unique<PfnPool>(cfg_.pool_pages);
  TdpMmuConfig mc;
  mc.external_spt_policy = cfg_.external_spt_policy;
  mc.split_alloc = cfg_.split_alloc;
  mc.what_if = cfg_.what_if;
  mc.root_level = cfg_.ept_levels == 5 ? PgLevel::k256T : PgLevel::k512G;
  const int gpa_bits = cfg_.ept_levels == 5 ? 52 : 48;
  mc.max_gfn_exclusive = 1ull << (gpa_bits - kPageShift);
  if (is_td()) {
    // The shared bit is the top GPA bit the EPT can translate.
    shared_bit_ = 1ull << (gpa_bits - 1);
    gfn_direct_bits_ = shared_bit_ >> kPageShift;
    mc.has_mirrored_tdp = true;
    mc.gfn_direct_bits = gfn_direct_bits_;
    mc.mmio_value = spte::kMmioValueTdx;
  } else {
    mc.mmio_value = spte::kMmioValueVmx;
  }
  mmu_ = std::make_unique<TdpMmu>(*pool_, bugs_, mc, inject_);
  mmu_->set_remote_tlb(this);
  if (is_td()) {
    tdx::ModuleConfig modc;
    modc.sept_levels = cfg_.ept_levels;
    modc.dynamic_pamt = cfg_.dynamic_pamt;
    modc.enhanced_demote_interruptibility = cfg_.enhanced_demote_interruptibility;
    modc.lax_tlb_tracking = cfg_.what_if.lax_tlb_tracking;
    module_ = std::make_unique<tdx::TdxModule>(*pool_, modc, inject_);
    tdx_ = std::make_unique<tdx::TdxOps>(*module_, *pool_, bugs_, mmu_->mmu_lock());
    tdx_->set_kicker(this);
    tdx_->set_skip_wbinvd(cfg_.what_if.no_wbinvd);
    tdx_->set_split_pool_topup_apart(cfg_.what_if.split_pool_topup_apart);
    tdx_->set_skip_kick_after_track(cfg_.what_if.no_kick_after_track);
    tdx_->set_injector(inject_);
    const DesignInfo* d = find_design(cfg_.design);
    mmu_->set_external(tdx_.get(), d ? d->make() : nullptr);
  }
}

Vm::~Vm() { destroy(); }

int Vm::create() {
  if (created_) return -EEXIST;
  if (is_td() && !mmu_->design()) return -EINVAL;
  // A design that cannot split private huge pages refuses them outright.
  if (is_td() && cfg_.huge_pages && !mmu_->design()->supports_mirror_huge()) return -EOPNOTSUPP;
  created_ = true;
  if (is_td())
    if (int r = tdx_->tdx_td_init(cfg_.hkid)) return r;
  for (int i = 0; i < cfg_.nr_vcpus; i++) {
    vcpus_.push_back(std::make_unique<Vcpu>(i, *pool_));
    if (is_td())
      if (int r = tdx_->tdx_vcpu_create(i)) return r;
  }
  usable_ = true;
  return 0;
}

// The slot list changes between scheduling points (KVM's SRCU-protected
// memslots): every lookup and change touches it, for partial-order reduction.
Memslot* Vm::slot_by_id(int id) {
  sync::sched_touch(&slots_);
  for (auto& s : slots_)
    if (s->id == id) return s.get();
  return nullptr;
}

const Memslot* Vm::find_slot(Gfn gfn) const {
  sync::sched_touch(&slots_);
  for (const auto& s : slots_)
    if (s->contains(gfn)) return s.get();
  return nullptr;
}

bool Vm::gfn_is_private(Gfn gfn) const {
  const Memslot* s = find_slot(gfn);
  return s && s->is_private(gfn);
}

int Vm::add_memslot(int id, uint64_t gpa, uint64_t size, uint32_t flags) {
  return add_memslot(id, gpa, size, flags, nullptr);
}

int Vm::add_memslot(int id, uint64_t gpa, uint64_t size, uint32_t flags, std::shared_ptr<Backing> userspace) {
  if (unusable()) return -EINVAL;
  if (bugs_.bugged()) return -EIO;
  if (size == 0 || (gpa | size) & (kPageSize - 1)) return -EINVAL;
  if (shared_bit_ && (gpa + size > shared_bit_)) return -EINVAL;
  if ((flags & kMemGuestMemfd) && !is_td()) return -EINVAL;
  if (userspace && userspace->npages() < (size >> kPageShift)) return -EFAULT;
  sync::WriteGuard slots(slots_lock_);
  if (slot_by_id(id)) return -EEXIST;
  const Gfn base = Gfn::from_gpa(gpa);
  const uint64_t n = size >> kPageShift;
  for (const auto& s : slots_)
    if (base < s->base_gfn + s->npages && s->base_gfn < base + n) return -EEXIST;
  auto s = std::make_unique<Memslot>();
  s->id = id;
  s->base_gfn = base;
  s->npages = n;
  s->flags = flags;
  s->shared = userspace ? std::move(userspace)
                        : std::make_shared<Backing>(*pool_, PageOwner::GuestShared, n, cfg_.shared_backing);
  if (flags & kMemGuestMemfd)
    s->gmem = std::make_unique<Backing>(*pool_, PageOwner::GuestPrivate, n, PgLevel::k2M);
  s->private_bits.assign((n + 63) / 64, 0);
  s->guest_inhibit_2m.assign((n + 511) / 512, 0);
  s->dirty_bitmap.assign((n + 63) / 64, 0);
  const bool log = flags & kMemLogDirtyPages;
  s->flags &= ~kMemLogDirtyPages;
  sync::sched_touch(&slots_);
  slots_.push_back(std::move(s));
  stats_.memslot_adds++;
  range_changed(base, n);
  return log ? set_dirty_logging_locked(*slots_.back(), true) : 0;
}

void Vm::mmu_invalidate_begin(Gfn start, Gfn end) {
  sync::assert_held_write(mmu_->mmu_lock(), bugs_);
  // kvm_mmu_invalidate_begin() + kvm_mmu_invalidate_range_add(): the range
  // grows to cover every invalidation in progress at once.
  if (invalidate_in_progress_.fetch_add(1) == 0) {
    invalidate_range_start_.store(start.v, std::memory_order_relaxed);
    invalidate_range_end_.store(end.v, std::memory_order_relaxed);
  } else {
    invalidate_range_start_.store(std::min(start.v, invalidate_range_start_.load(std::memory_order_relaxed)),
                                  std::memory_order_relaxed);
    invalidate_range_end_.store(std::max(end.v, invalidate_range_end_.load(std::memory_order_relaxed)),
                                std::memory_order_relaxed);
  }
}

void Vm::mmu_invalidate_end() {
  sync::assert_held_write(mmu_->mmu_lock(), bugs_);
  invalidate_seq_.fetch_add(1);
  invalidate_in_progress_.fetch_sub(1);
}

void Vm::kvm_mmu_unmap_gfn_range(const GfnRange& r) {
  sync::assert_held_write(mmu_->mmu_lock(), bugs_);
  if (mmu_->kvm_tdp_mmu_unmap_gfn_range(r, false) && !cfg_.what_if.no_flush_after_unmap) mmu_->kvm_flush_remote_tlbs();
}

int Vm::delete_memslot(int id) {
  sync::RcuThread rcu_thread;
  Memslot* s = nullptr;
  {
    // kvm_invalidate_memslot(): the slot, marked KVM_MEMSLOT_INVALID, goes
    // live in place of the old one...
    sync::ReadGuard slots(slots_lock_);
    s = slot_by_id(id);
    if (!s || unusable() || s->is_invalid()) return -EINVAL;
    s->invalid.store(true, std::memory_order_release);
  }
  {
    // ...and synchronize_srcu_expedited() waits out every reader that may
    // still use it as valid. A vCPU that keeps retrying a fault on it
    // without ever dropping SRCU holds this up for good.
    sync::WriteGuard slots(slots_lock_);
  }
  {
    // kvm_arch_flush_shadow_memslot() -> kvm_mmu_zap_memslot(): a TD never
    // uses the "zap all" quirk; private and shared leaves of the slot go
    // (mirror page tables stay until the TD is destroyed). Faults meeting
    // the invalid slot meanwhile retry.
    sync::ReadGuard slots(slots_lock_);
    sync::WriteGuard lock(mmu_->mmu_lock());
    invalidate_seq_.fetch_add(1);
    kvm_mmu_unmap_gfn_range({s->base_gfn, s->base_gfn + s->npages, GfnFilter::Both, true});
  }
  check_no_translations(s->base_gfn, s->base_gfn + s->npages, "the memslot's deletion");
  // kvm_delete_memslot(): the second swap, and its synchronize_srcu.
  sync::WriteGuard slots(slots_lock_);
  sync::sched_touch(&slots_);
  range_changed(s->base_gfn, s->npages);
  slots_.erase(std::find_if(slots_.begin(), slots_.end(), [&](auto& p) { return p.get() == s; }));
  stats_.memslot_deletes++;
  return 0;
}

int Vm::set_memory_attributes(uint64_t gpa, uint64_t size, bool to_private) {
  sync::RcuThread rcu_thread;
  if (!is_td() || unusable()) return -EINVAL;
  if (bugs_.bugged()) return -EIO;
  if ((gpa | size) & (kPageSize - 1)) return -EINVAL;
  const Gfn start = Gfn::from_gpa(gpa), end = Gfn::from_gpa(gpa + size);
  sync::ReadGuard slots(slots_lock_);
  for (Gfn g = start; g < end; g += 1)
    if (!slot_for(g)) return -EINVAL;
  {
    // kvm_arch_pre_set_memory_attributes(): drop the side being left. The
    // invalidation stays open until the attributes are updated, so a fault
    // that read the old attribute retries instead of mapping the old side.
    sync::WriteGuard lock(mmu_->mmu_lock());
    // Private -> shared of a range that cuts a private huge page: split the
    // head and tail first, or the unmap would take the whole 2M with it.
    if (!to_private)
      if (int r = split_private_boundaries(start, end)) return r;
    mmu_invalidate_begin(start, end);
    kvm_mmu_unmap_gfn_range({start, end, to_private ? GfnFilter::Shared : GfnFilter::Private, true});
  }
  for (Gfn g = start; g < end; g += 1) slot_for(g)->set_private(g, to_private);
  forget_accept_fallbacks(gpa, gpa + size);
  range_changed(start, end - start);
  {
    sync::WriteGuard lock(mmu_->mmu_lock());
    mmu_invalidate_end();
  }
  if (to_private) check_no_translations(start, end, "KVM_SET_MEMORY_ATTRIBUTES(PRIVATE)");
  stats_.conversions++;
  return 0;
}

void Vm::forget_accept_fallbacks(uint64_t start, uint64_t end) {
  for (const auto& v : vcpus_) {
    uint64_t base = v->accept_fallback_base.load(std::memory_order_relaxed);
    if (base == Vcpu::kNoAcceptFallback) continue;
    const uint64_t span = pages_per_hpage(v->accept_fallback_level.load(std::memory_order_relaxed)) * kPageSize;
    // A vCPU that just moved on to another block keeps its new one: the
    // exchange fails on the value it stored.
    if (base < end && base + span > start)
      v->accept_fallback_base.compare_exchange_strong(base, Vcpu::kNoAcceptFallback, std::memory_order_relaxed);
  }
}

int Vm::punch_hole(uint64_t gpa, uint64_t size) {
  sync::RcuThread rcu_thread;
  if (!is_td() || unusable() || (gpa | size) & (kPageSize - 1)) return -EINVAL;
  const Gfn start = Gfn::from_gpa(gpa), end = Gfn::from_gpa(gpa + size);
  sync::ReadGuard slots(slots_lock_);
  {
    // guest_memfd invalidation: private mappings of the range go first, so a
    // page is never freed while the S-EPT still maps it, and faults that
    // looked the page up meanwhile retry.
    sync::WriteGuard lock(mmu_->mmu_lock());
    if (int r = split_private_boundaries(start, end)) return r;
    mmu_invalidate_begin(start, end);
    kvm_mmu_unmap_gfn_range({start, end, GfnFilter::Private, true});
  }
  for (auto& s : slots_) {
    if (!s->gmem) continue;
    const Gfn lo = std::max(start, s->base_gfn), hi = std::min(end, s->base_gfn + s->npages);
    if (lo < hi) s->gmem->punch_hole(lo - s->base_gfn, hi - lo);
  }
  range_changed(start, end - start);
  sync::WriteGuard lock(mmu_->mmu_lock());
  mmu_invalidate_end();
  return 0;
}

void Vm::zap_all_fast() {
  if (unusable()) return;
  sync::RcuThread rcu;
  {
    sync::WriteGuard lock(mmu_->mmu_lock());
    mmu_->kvm_tdp_mmu_invalidate_roots(cfg_.what_if.fast_zap_mirror ? kValidRoots : kDirectRoots);
  }
  // KVM_REQ_MMU_FREE_OBSOLETE_ROOTS: every vCPU leaves the guest and drops
  // its invalid root on the way back in (vcpu_load_roots), loading a new one
  // with a flush. Only then may the invalid roots' tables go, unflushed.
  hw_.request_reload_all_and_wait();
  kick_all_vcpus_out();
  mmu_->kvm_tdp_mmu_zap_invalidated_roots(true);
}

void Vm::destroy() {
  if (destroyed_) return;
  destroyed_ = true;
  sync::RcuThread rcu_thread;
  // The vCPU threads are gone (the VMM joined them): no kick can be answered.
  vcpus_threaded_ = false;
  kick_all_vcpus_out();
  // No vCPU runs again: what their CPUs cached cannot be used, so the
  // tables below may go without a flush (exit_mmap's zap does not flush).
  for (auto& v : vcpus_) hw_.flush_current(v->id);
  if (is_td() && created_) {
    // 1. guest_memfd files hold a VM reference and invalidate their whole
    //    range before dropping it: every private leaf is removed from the
    //    mirror and the S-EPT while the HKID is still assigned.
    {
      sync::WriteGuard lock(mmu_->mmu_lock());
      for (auto& s : slots_)
        if (s->gmem) kvm_mmu_unmap_gfn_range({s->base_gfn, s->base_gfn + s->npages, GfnFilter::Private, true});
    }
    for (auto& s : slots_)
      if (s->gmem) s->gmem->release_all();
    // 2. vm_pre_destroy: release the HKID.
    std::vector<int> ids;
    for (auto& v : vcpus_) ids.push_back(v->id);
    tdx_->tdx_mmu_release_hkid(ids);
  }
  // 3. mmu_notifier release: direct roots only.
  {
    sync::WriteGuard lock(mmu_->mmu_lock());
    mmu_->kvm_tdp_mmu_zap_all();
  }
  // kvm_arch_destroy_vm():
  // 4. kvm_destroy_vcpus(): each vCPU drops its roots and caches, and TDX
  //    reclaims its TDCX and TDVPR pages.
  for (auto& v : vcpus_) {
    vcpu_put_roots(*v);
    v->caches.free_all();
    if (is_td() && created_) tdx_->tdx_vcpu_free(v->id);
  }
  // 5. kvm_mmu_uninit_vm(): the mirror root goes now, each S-EPT page
  //    reclaimed as its table is removed (legal: the HKID is gone).
  mmu_->kvm_mmu_uninit_tdp_mmu();
  // What the TDX-side S-EPT pool (--external-spt tdx-pool) still holds was
  // never handed out.
  if (is_td()) tdx_->free_external_pool();
  // 6. vm_destroy: the TDCS pages, then the TDR. Then userspace frees its
  //    memory.
  if (is_td() && created_) tdx_->tdx_vm_destroy();
  for (auto& s : slots_) s->shared->release_all();
  slots_.clear();
  for (Pfn p : sources_) pool_->free(p, PageOwner::HostSource);
  sources_.clear();
}

}  // namespace mirrormmu
