// SPDX-License-Identifier: MIT
// Splitting huge leaves: the one-entry split both fault-in and the range
// walkers use, the allocation of tables for a split (with mmu_lock dropped),
// and the range walkers for direct roots (eager splitting when dirty logging
// starts) and mirror roots (demotion for the guest's 4K accept and for
// conversions that cut a huge page).
#include <cerrno>

#include "base/running_vcpu.h"
#include "mmu/tdp_mmu.h"
#include "sync/sched.h"
#include "spte/spte.h"

namespace mirrormmu {

using namespace spte;

const char* external_spt_policy_name(ExternalSptPolicy p) {
  switch (p) {
    case ExternalSptPolicy::KvmCache: return "kvm-cache";
    case ExternalSptPolicy::TdxPool: return "tdx-pool";
    case ExternalSptPolicy::Mixed: return "mixed";
  }
  return "?";
}

const char* split_alloc_name(SplitAlloc a) { return a == SplitAlloc::Prefilled ? "prefilled" : "unfilled"; }

// Replaces a huge leaf by a table of 512 equivalent smaller leaves. No TLB
// flush: the old and the new translations are the same.
int TdpMmu::tdp_mmu_split_huge_page(TdpIter& iter, MmuPage* sp, bool shared) {
  const uint64_t huge = iter.old_spte;
  const PgLevel child_level = lower(iter.level);
  // Plain writes: the table is not reachable until linked. Every entry is
  // written before the link, which is what makes an unfilled allocation
  // safe here.
  // make_small_spte(): 4K pages of a huge leaf NX huge pages kept from
  // executing may execute again, the mitigation being moot at 4K.
  const uint64_t exec = cfg_.nx_huge_pages && child_level == PgLevel::k4K && !iter.is_mirror() ? kExecutable : 0;
  for (int i = 0; i < kSptePerPage; i++) sp->spt[i] = make_small(huge, child_level, i) | exec;
  if (int r = tdp_mmu_link_sp(iter, sp, shared)) return r;
  // handle_changed_spte() took the huge leaf off the stats; add the smaller ones.
  kvm_update_page_stats(child_level, kSptePerPage);
  stats_.splits.fetch_add(1, std::memory_order_relaxed);
  return 0;
}

// sp->external_spt for a new mirror table. `c` is the faulting vCPU's caches,
// or null on the per-VM split path.
Pfn TdpMmu::alloc_external_spt(VcpuMmuCaches* c) {
  const bool from_tdx = cfg_.external_spt_policy == ExternalSptPolicy::TdxPool ||
                        (cfg_.external_spt_policy == ExternalSptPolicy::Mixed && c);
  if (from_tdx) return external_ ? external_->alloc_external_fault_cache(c ? c->vcpu_id : -1) : kInvalidPfn;
  if (c) return c->external_spt_cache.alloc(kvm_);
  return pool_.alloc(PageOwner::SeptPage);
}

// tdp_mmu_alloc_sp_for_split(): called with mmu_lock dropped, so it may
// allocate (and fail) like any GFP_KERNEL_ACCOUNT allocation.
MmuPage* TdpMmu::tdp_mmu_alloc_sp_for_split(bool mirror) {
  if (inject_ && inject_->check(InjectPoint::SplitTable) != Injection::None) return nullptr;
  Pfn external = kInvalidPfn;
  if (mirror) {
    // The demotion's PAMT pairs come from the running vCPU's cache (a 4K
    // accept inside a 2M mapping), else from the VM's.
    if (external_ && external_->topup_external_cache(kvm_get_running_vcpu(), kRootMaxLevel) != 0) return nullptr;
    // The VM's TDX-side pool tops itself up as it hands the page out; the
    // what-if tops it up here, apart from the take. The top-up's allocation
    // may sleep, so another split can run between it and the take.
    if (cfg_.what_if.split_pool_topup_apart && cfg_.external_spt_policy == ExternalSptPolicy::TdxPool && external_) {
      if (external_->topup_external_fault_cache(-1, 1) != 0) return nullptr;
      sync::sched_point(sync::PointKind::Yield);
    }
    external = alloc_external_spt(nullptr);
    if (!external.valid()) return nullptr;
  }
  const Pfn pfn = pool_.alloc(PageOwner::PageTable, true);
  if (!pfn.valid()) {
    if (external.valid()) pool_.free(external, PageOwner::SeptPage);
    return nullptr;
  }
  auto* sp = new MmuPage;
  sp->spt_pfn = pfn;
  sp->spt = pool_.page_ptr(pfn);
  sp->owner = this;
  sp->external_spt = external;
  pool_.set_page_private(pfn, sp);
  if (cfg_.split_alloc == SplitAlloc::Prefilled) {
    for (int i = 0; i < kSptePerPage; i++) sp->spt[i] = kNonPresent;
  } else {
    // A page straight from the allocator: stand-in garbage the checker can
    // recognise if it ever becomes reachable.
    for (int i = 0; i < kSptePerPage; i++) sp->spt[i] = kUnfilledSpte;
  }
  stats_.split_allocs.fetch_add(1, std::memory_order_relaxed);
  return sp;
}

// tdp_mmu_split_huge_pages_root(): pre-order from target_level + 1, so a 1G
// leaf splits into 2M leaves that the same walk then splits again. When no
// table is at hand the lock (and RCU) is dropped to allocate one and the
// walk restarts from the root: what it saw may be gone.
int TdpMmu::tdp_mmu_split_huge_pages_root(MmuPage* root, Gfn start, Gfn end, PgLevel target_level,
                                          bool shared) {
  MmuPage* sp = nullptr;
  int ret = 0;
  const auto relock = [&](bool unlock) {
    if (shared)
      unlock ? mmu_lock_.read_unlock() : mmu_lock_.read_lock();
    else
      unlock ? mmu_lock_.write_unlock() : mmu_lock_.write_lock();
  };
  sync::rcu_read_lock();
  for (TdpIter iter(pool_, root, higher(target_level), start, kvm_gfn_root_bits(root));
       iter.valid && iter.gfn < end; iter.next()) {
    for (;;) {
      if (tdp_mmu_iter_cond_resched(iter, false, shared)) break;
      if (!is_shadow_present(iter.old_spte) || !is_large(iter.old_spte)) break;
      if (!sp) {
        sync::rcu_read_unlock();
        relock(true);
        sp = tdp_mmu_alloc_sp_for_split(root->is_mirror());
        relock(false);
        sync::rcu_read_lock();
        if (!sp) {
          ret = -ENOMEM;
          goto out;
        }
        iter.yielded = true;
        break;
      }
      tdp_mmu_init_child_sp(sp, iter);
      // A lost cmpxchg (shared) refreshed old_spte: look at the entry again.
      if (tdp_mmu_split_huge_page(iter, sp, shared)) continue;
      sp = nullptr;
      break;
    }
  }
out:
  sync::rcu_read_unlock();
  // Never linked: nobody can have seen it.
  if (sp) tdp_mmu_free_sp(sp, false);
  return ret;
}

int TdpMmu::kvm_tdp_mmu_try_split_huge_pages(Gfn start, Gfn end, PgLevel target_level, bool shared) {
  if (shared)
    sync::assert_held_read(mmu_lock_, kvm_);
  else
    sync::assert_held_write(mmu_lock_, kvm_);
  int r = 0;
  for (MmuPage* root : roots_snapshot(kDirectRoots)) {
    if (!r) r = tdp_mmu_split_huge_pages_root(root, start, end, target_level, shared);
    kvm_tdp_mmu_put_root(root);
  }
  return r;
}

int TdpMmu::kvm_tdp_mmu_mirrors_split_huge_pages(Gfn start, Gfn end, PgLevel target_level) {
  sync::assert_held_write(mmu_lock_, kvm_);
  if (kvm_bug_on(!design_->supports_mirror_huge(), kvm_, Site::map_mirror_split)) return -EIO;
  int r = 0;
  for (MmuPage* root : roots_snapshot(kMirrorRoots)) {
    if (!r) r = tdp_mmu_split_huge_pages_root(root, start, end, target_level, false);
    kvm_tdp_mmu_put_root(root);
  }
  return r;
}

}  // namespace mirrormmu
