// SPDX-License-Identifier: GPL-2.0-only
/*
 * The VM of the oracle and its operations: each does what the named KVM
 * entry point does around the tree's tdp_mmu.c, with the same locks.
 */
#include <stdlib.h>

#include "mmu.h"
#include "mmu_internal.h"
#include "spte.h"
#include "tdp_iter.h"
#include "tdp_mmu.h"

#include "glue/internal.h"

static void init_cache(struct kvm_mmu_memory_cache *mc, struct kmem_cache *kc, u64 init_value) {
  memset(mc, 0, sizeof(*mc));
  mc->kmem_cache = kc;
  mc->init_value = init_value;
  mc->capacity = KMMU_CACHE_CAPACITY;
  mc->objects = calloc(KMMU_CACHE_CAPACITY, sizeof(void *));
}

/* kvm_calc_tdp_mmu_root_page_role() for a 4-level EPT VM outside SMM. */
static union kvm_mmu_page_role tdp_root_role(void) {
  union kvm_mmu_page_role role = { .word = 0 };
  role.level = PT64_ROOT_4LEVEL;
  role.direct = 1;
  role.access = ACC_ALL;
  role.cr0_wp = 1;
  role.efer_nx = 1;
  role.ad_disabled = !kvm_ad_enabled();
  return role;
}

struct kmmu_vm *kmmu_vm_create(const struct kmmu_events *ev, int nr_vcpus) {
  if (g_vm || nr_vcpus < 1) return NULL;
  kmmu_once_init();
  struct kmmu_vm *vm = calloc(1, sizeof(*vm));
  vm->ev = *ev;
  kshim_rwlock_init(&vm->kvm.mmu_lock);
  kshim_rwlock_init(&vm->srcu);
  mutex_init(&vm->kvm.slots_lock);
  refcount_set(&vm->kvm.users_count, 1);
  INIT_LIST_HEAD(&vm->kvm.arch.possible_nx_huge_pages);
  vm->kvm.arch.disable_nx_huge_pages = true;
  kvm_mmu_init_tdp_mmu(&vm->kvm);
  vm->nr_vcpus = nr_vcpus;
  vm->kvm.created_vcpus = nr_vcpus;
  vm->vcpus = calloc(nr_vcpus, sizeof(*vm->vcpus));
  for (int i = 0; i < nr_vcpus; i++) {
    struct kvm_vcpu *v = &vm->vcpus[i].vcpu;
    v->kvm = &vm->kvm;
    v->vcpu_id = i;
    v->arch.mmu = &v->arch.root_mmu;
    v->arch.mmu->root.hpa = INVALID_PAGE;
    v->arch.mmu->root_role = tdp_root_role();
    init_cache(&v->arch.mmu_shadow_page_cache, NULL, SHADOW_NONPRESENT_VALUE);
    init_cache(&v->arch.mmu_page_header_cache, mmu_page_header_cache, 0);
  }
  g_vm = vm;
  return vm;
}

/* kvm_mmu_free_roots() for the vCPU's one TDP MMU root. */
static void put_vcpu_root(struct kmmu_vm *vm, struct kvm_vcpu *v) {
  struct kvm_mmu *mmu = v->arch.mmu;
  if (!VALID_PAGE(mmu->root.hpa)) return;
  read_lock(&vm->kvm.mmu_lock);
  kvm_tdp_mmu_put_root(&vm->kvm, to_shadow_page(mmu->root.hpa));
  read_unlock(&vm->kvm.mmu_lock);
  mmu->root.hpa = INVALID_PAGE;
}

/* kvm_mmu_load() as KVM_RUN reaches it: drop an obsolete root
 * (KVM_REQ_MMU_FREE_OBSOLETE_ROOTS), then find or allocate a valid one. */
static int mmu_load(struct kmmu_vm *vm, struct kvm_vcpu *v) {
  struct kvm_mmu *mmu = v->arch.mmu;
  if (VALID_PAGE(mmu->root.hpa)) {
    read_lock(&vm->kvm.mmu_lock);
    bool obsolete = to_shadow_page(mmu->root.hpa)->role.invalid;
    read_unlock(&vm->kvm.mmu_lock);
    if (obsolete) put_vcpu_root(vm, v);
  }
  if (VALID_PAGE(mmu->root.hpa)) return 0;
  int r = mmu_topup_memory_caches(v);
  if (r) return r;
  r = kvm_tdp_mmu_alloc_root(v);
  if (r) return r;
  /* kvm_mmu_load(): the provenance of the new root is unknown. */
  if (vm->ev.flush_current) vm->ev.flush_current(vm->ev.ctx, v->vcpu_id);
  return 1;
}

int kmmu_vcpu_reload(struct kmmu_vm *vm, int vcpu) {
  if (vcpu < 0 || vcpu >= vm->nr_vcpus) return -EINVAL;
  return mmu_load(vm, &vm->vcpus[vcpu].vcpu);
}

void kmmu_table_freed(void *page) {
  struct kmmu_vm *vm = g_vm;
  if (vm && vm->ev.table_freed) vm->ev.table_freed(vm->ev.ctx, (uint64_t)(uintptr_t)page);
}

void kmmu_cpu_walk(struct kmmu_vm *vm, int vcpu, uint64_t gfn, int access, struct kmmu_hw_walk *w) {
  memset(w, 0, sizeof(*w));
  if (vcpu < 0 || vcpu >= vm->nr_vcpus) return;
  hpa_t root = __atomic_load_n(&vm->vcpus[vcpu].vcpu.arch.mmu->root.hpa, __ATOMIC_ACQUIRE);
  if (!VALID_PAGE(root)) return;
  rcu_read_lock();
again:
  memset(w, 0, sizeof(*w));
  u64 *pt = __va(root);
  for (int level = to_shadow_page(root)->role.level;; level--) {
    w->tables[w->ntables++] = (uint64_t)(uintptr_t)pt;
    u64 *sptep = &pt[SPTE_INDEX(gfn << PAGE_SHIFT, level)];
    u64 spte = __atomic_load_n(sptep, __ATOMIC_ACQUIRE);
    if (!(spte & VMX_EPT_RWX_MASK)) break;   /* not present to the CPU */
    if (level == PG_LEVEL_4K || (spte & PT_PAGE_SIZE_MASK)) {
      /* EPT A/D: a locked update of the entry as read; walk again if it
       * changed meanwhile. */
      u64 set = 0;
      if (access && !(spte & shadow_accessed_mask)) set |= shadow_accessed_mask;
      if (access == 2 && (spte & PT_WRITABLE_MASK) && !(spte & shadow_dirty_mask)) set |= shadow_dirty_mask;
      if (set) {
        if (!kshim_try_cmpxchg64(sptep, &spte, spte | set)) goto again;
        spte |= set;
      }
      w->leaf = true;
      w->level = level;
      w->pfn = spte_to_pfn(spte) + (gfn & (KVM_PAGES_PER_HPAGE(level) - 1));
      w->writable = spte & PT_WRITABLE_MASK;
      w->dirty = spte & shadow_dirty_mask;
      w->executable = spte & VMX_EPT_EXECUTABLE_MASK;
      break;
    }
    pt = spte_to_child_pt(spte, level);
  }
  rcu_read_unlock();
}

int64_t kmmu_vm_destroy(struct kmmu_vm *vm) {
  /* kvm_destroy_vm(): kvm_arch_flush_shadow_all() zaps everything, the
   * vCPUs put their roots, then kvm_mmu_uninit_tdp_mmu(). */
  write_lock(&vm->kvm.mmu_lock);
  kvm_tdp_mmu_zap_all(&vm->kvm);
  write_unlock(&vm->kvm.mmu_lock);
  for (int i = 0; i < vm->nr_vcpus; i++) {
    put_vcpu_root(vm, &vm->vcpus[i].vcpu);
    kmmu_cache_free(&vm->vcpus[i].vcpu.arch.mmu_shadow_page_cache);
    kmmu_cache_free(&vm->vcpus[i].vcpu.arch.mmu_page_header_cache);
  }
  refcount_set(&vm->kvm.users_count, 0);
  kvm_mmu_uninit_tdp_mmu(&vm->kvm);
  for (int i = 0; i < KMMU_MAX_SLOTS; i++) free(vm->slots[i].dirty_bitmap);
  kshim_rwlock_destroy(&vm->kvm.mmu_lock);
  kshim_rwlock_destroy(&vm->srcu);
  const int64_t left = __atomic_load_n(&g_pgtable_pages, __ATOMIC_RELAXED);
  free(vm->vcpus);
  free(vm);
  g_vm = NULL;
  return left;
}

void kmmu_vm_abandon(struct kmmu_vm *vm) {
  if (g_vm == vm) g_vm = NULL;
}

static struct kvm_memory_slot *slot_of(struct kmmu_vm *vm, int id) {
  return id >= 0 && id < KMMU_MAX_SLOTS && vm->used[id] ? &vm->slots[id] : NULL;
}

static int memslot_set(struct kmmu_vm *vm, int id, uint64_t base_gfn, uint64_t npages) {
  if (id < 0 || id >= KMMU_MAX_SLOTS || vm->used[id] || !npages) return -EINVAL;
  for (int i = 0; i < KMMU_MAX_SLOTS; i++)
    if (vm->used[i] && base_gfn < vm->slots[i].base_gfn + vm->slots[i].npages &&
        vm->slots[i].base_gfn < base_gfn + npages)
      return -EEXIST;
  struct kvm_memory_slot *s = &vm->slots[id];
  memset(s, 0, sizeof(*s));
  s->base_gfn = base_gfn;
  s->npages = npages;
  s->id = (short)id;
  s->dirty_bitmap = calloc(BITS_TO_LONGS(npages), sizeof(unsigned long));
  vm->used[id] = true;
  vm->memslots.generation += 2;
  return 0;
}

int kmmu_memslot_set(struct kmmu_vm *vm, int id, uint64_t base_gfn, uint64_t npages, bool dirty_log) {
  write_lock(&vm->srcu);
  int r = memslot_set(vm, id, base_gfn, npages);
  write_unlock(&vm->srcu);
  return r ? r : dirty_log ? kmmu_memslot_dirty_log(vm, id, true) : 0;
}

int kmmu_memslot_delete(struct kmmu_vm *vm, int id) {
  /* kvm_invalidate_memslot(): KVM_MEMSLOT_INVALID published first, then
   * synchronize_srcu() (the write side of the read section). */
  read_lock(&vm->srcu);
  struct kvm_memory_slot *s = slot_of(vm, id);
  if (s) __atomic_fetch_or(&s->flags, KVM_MEMSLOT_INVALID, __ATOMIC_RELEASE);
  read_unlock(&vm->srcu);
  if (!s) return -ENOENT;
  write_lock(&vm->srcu);
  /* kvm_arch_flush_shadow_memslot() without KVM_X86_QUIRK_SLOT_ZAP_ALL. */
  struct kvm_gfn_range range = { .slot = s, .start = s->base_gfn, .end = s->base_gfn + s->npages, .may_block = true };
  write_lock(&vm->kvm.mmu_lock);
  if (kvm_tdp_mmu_unmap_gfn_range(&vm->kvm, &range, false)) kvm_flush_remote_tlbs(&vm->kvm);
  write_unlock(&vm->kvm.mmu_lock);
  vm->used[id] = false;
  free(s->dirty_bitmap);
  s->dirty_bitmap = NULL;
  vm->memslots.generation += 2;
  write_unlock(&vm->srcu);
  return 0;
}

static int memslot_dirty_log(struct kmmu_vm *vm, int id, bool on);

int kmmu_memslot_dirty_log(struct kmmu_vm *vm, int id, bool on) {
  write_lock(&vm->srcu);
  int r = memslot_dirty_log(vm, id, on);
  write_unlock(&vm->srcu);
  return r;
}

static int memslot_dirty_log(struct kmmu_vm *vm, int id, bool on) {
  struct kvm_memory_slot *s = slot_of(vm, id);
  if (!s) return -ENOENT;
  if (on == !!(s->flags & KVM_MEM_LOG_DIRTY_PAGES)) return 0;
  if (on) {
    s->flags |= KVM_MEM_LOG_DIRTY_PAGES;
    /* kvm_mmu_slot_apply_flags() -> kvm_mmu_slot_remove_write_access():
     * without PML, write-protect every leaf so the next write faults. */
    read_lock(&vm->kvm.mmu_lock);
    bool flush = kvm_tdp_mmu_wrprot_slot(&vm->kvm, s, PG_LEVEL_4K);
    read_unlock(&vm->kvm.mmu_lock);
    if (flush) kvm_flush_remote_tlbs_range(&vm->kvm, s->base_gfn, s->npages);
  } else {
    s->flags &= ~KVM_MEM_LOG_DIRTY_PAGES;
    /* kvm_mmu_zap_collapsible_sptes(): huge pages come back. */
    read_lock(&vm->kvm.mmu_lock);
    kvm_tdp_mmu_zap_collapsible_sptes(&vm->kvm, s);
    read_unlock(&vm->kvm.mmu_lock);
  }
  return 0;
}

static bool g_fault_outside_srcu;
void kmmu_plant_fault_outside_srcu(bool on) { g_fault_outside_srcu = on; }
static void fault_srcu_lock(struct kmmu_vm *vm) {
  if (!g_fault_outside_srcu) read_lock(&vm->srcu);
}
static void fault_srcu_unlock(struct kmmu_vm *vm) {
  if (!g_fault_outside_srcu) read_unlock(&vm->srcu);
}

#ifndef INVALID_GPA
#define INVALID_GPA (~(gpa_t)0)
#endif

static bool g_no_invalidate_retry;
void kmmu_plant_no_invalidate_retry(bool on) { g_no_invalidate_retry = on; }

/* mmu_invalidate_retry_gfn(), whose "unsafe" variant is the same reads
 * without mmu_lock. */
static bool mmu_invalidate_retry_gfn(struct kmmu_vm *vm, unsigned long mmu_seq, gfn_t gfn) {
  if (g_no_invalidate_retry) return false;
  if (unlikely(__atomic_load_n(&vm->mmu_invalidate_in_progress, __ATOMIC_ACQUIRE))) {
    if (gfn >= READ_ONCE(vm->mmu_invalidate_range_start) && gfn < READ_ONCE(vm->mmu_invalidate_range_end)) return true;
  }
  return __atomic_load_n(&vm->mmu_invalidate_seq, __ATOMIC_ACQUIRE) != mmu_seq;
}

void kmmu_invalidate_range_start(struct kmmu_vm *vm, uint64_t start, uint64_t end) {
  /* kvm_handle_hva_range(): per overlapping slot, under the write lock,
   * on_lock = kvm_mmu_invalidate_begin once, handler =
   * kvm_mmu_unmap_gfn_range (the range added, then the zap), one flush. */
  read_lock(&vm->srcu);
  write_lock(&vm->kvm.mmu_lock);
  if (++vm->mmu_invalidate_in_progress == 1) {
    WRITE_ONCE(vm->mmu_invalidate_range_start, INVALID_GPA);
    WRITE_ONCE(vm->mmu_invalidate_range_end, INVALID_GPA);
  }
  bool flush = false;
  for (int i = 0; i < KMMU_MAX_SLOTS; i++) {
    struct kvm_memory_slot *s = vm->used[i] ? &vm->slots[i] : NULL;
    if (!s) continue;
    uint64_t lo = max(start, s->base_gfn), hi = min(end, s->base_gfn + s->npages);
    if (lo >= hi) continue;
    if (vm->mmu_invalidate_range_start == INVALID_GPA) {
      WRITE_ONCE(vm->mmu_invalidate_range_start, lo);
      WRITE_ONCE(vm->mmu_invalidate_range_end, hi);
    } else {
      WRITE_ONCE(vm->mmu_invalidate_range_start, min(vm->mmu_invalidate_range_start, lo));
      WRITE_ONCE(vm->mmu_invalidate_range_end, max(vm->mmu_invalidate_range_end, hi));
    }
    struct kvm_gfn_range range = { .slot = s, .start = lo, .end = hi, .may_block = true };
    flush = kvm_tdp_mmu_unmap_gfn_range(&vm->kvm, &range, flush);
  }
  if (flush) kvm_flush_remote_tlbs(&vm->kvm);
  write_unlock(&vm->kvm.mmu_lock);
  read_unlock(&vm->srcu);
}

void kmmu_invalidate_range_end(struct kmmu_vm *vm, uint64_t start, uint64_t end) {
  (void)start;
  (void)end;
  write_lock(&vm->kvm.mmu_lock);
  __atomic_store_n(&vm->mmu_invalidate_seq, vm->mmu_invalidate_seq + 1, __ATOMIC_RELEASE);
  __atomic_store_n(&vm->mmu_invalidate_in_progress, vm->mmu_invalidate_in_progress - 1, __ATOMIC_RELEASE);
  KVM_BUG_ON(vm->mmu_invalidate_in_progress < 0, &vm->kvm);
  write_unlock(&vm->kvm.mmu_lock);
}

static bool g_fast_pf_no_mark_dirty;
void kmmu_plant_fast_pf_no_mark_dirty(bool on) { g_fast_pf_no_mark_dirty = on; }

/* fast_page_fault() as mmu.c runs it for the TDP MMU with EPT A/D on, where
 * page_fault_can_be_fast() admits only a write to a present entry: make a
 * leaf write-protected for dirty logging but still MMU-writable writable
 * again under RCU alone, and log the page. RET_PF_INVALID: go the slow way. */
static int fast_page_fault(struct kvm_vcpu *vcpu, struct kvm_page_fault *fault) {
  int ret = RET_PF_INVALID;
  unsigned int retry_count = 0;
  u64 spte = 0;
  kvm_tdp_mmu_walk_lockless_begin();
  for (;;) {
    u64 *sptep = kvm_tdp_mmu_fast_pf_get_last_sptep(vcpu, fault->gfn, &spte);
    if (WARN_ON_ONCE(!sptep)) spte = FROZEN_SPTE;
    if (!is_shadow_present_pte(spte)) break;
    struct kvm_mmu_page *sp = sptep_to_sp(sptep);
    if (!is_last_spte(spte, sp->role.level)) break;
    if (is_writable_pte(spte)) {   /* is_access_allowed() for a write */
      ret = RET_PF_SPURIOUS;
      break;
    }
    if (!is_mmu_writable_spte(spte)) break;
    if (sp->role.level > PG_LEVEL_4K && kvm_slot_dirty_track_enabled(fault->slot)) break;
    u64 old_spte = spte;
    if (try_cmpxchg64(sptep, &old_spte, spte | PT_WRITABLE_MASK)) {
      /* fast_pf_fix_direct_spte(): Writable went from clear to set */
      if (!g_fast_pf_no_mark_dirty) mark_page_dirty_in_slot(vcpu->kvm, fault->slot, fault->gfn);
      ret = RET_PF_FIXED;
      break;
    }
    if (++retry_count > 4) break;
  }
  kvm_tdp_mmu_walk_lockless_end();
  return ret;
}

static bool g_prefault_retries_invalid_slot;
void kmmu_plant_prefault_retries_invalid_slot(bool on) { g_prefault_retries_invalid_slot = on; }

/* A TDP fault, inside the caller's memslot read section. */
static int do_fault(struct kmmu_vm *vm, int vcpu, uint64_t gfn, uint64_t pfn, bool write, bool exec, int host_level,
                    bool prefetch) {
  struct kmmu_vcpu *kv = &vm->vcpus[vcpu];
  struct kvm_vcpu *v = &kv->vcpu;
  /* kvm_mmu_reload(): loads a root only if there is none; an obsolete one
   * goes when the vCPU handles its reload request (kmmu_vcpu_reload). */
  int r = VALID_PAGE(v->arch.mmu->root.hpa) ? 0 : mmu_load(vm, v);
  if (r < 0) return r;
  /* kvm_mmu_do_page_fault() for a TDP fault on a direct root. */
  struct kvm_page_fault fault = {
    .addr = gfn << PAGE_SHIFT,
    .error_code = (write ? PFERR_WRITE_MASK : 0) | (exec ? PFERR_FETCH_MASK : 0) | PFERR_USER_MASK,
    .exec = exec,
    .write = write,
    .user = true,
    .is_tdp = true,
    .prefetch = prefetch,
    .nx_huge_page_workaround_enabled = is_nx_huge_page_enabled(&vm->kvm),
    .max_level = KVM_MAX_HUGEPAGE_LEVEL,
    .req_level = PG_LEVEL_4K,
    .goal_level = PG_LEVEL_4K,
  };
  fault.gfn = gfn;
  fault.slot = kvm_vcpu_gfn_to_memslot(v, gfn);
  if (!fault.slot) return -EFAULT;   /* emulated MMIO is not modelled */
  /* kvm_tdp_mmu_page_fault(): no page tracking; the fast path first. */
  if (write) {
    r = fast_page_fault(v, &fault);
    if (r != RET_PF_INVALID) return r;
  }
  r = mmu_topup_memory_caches(v);
  if (r) return r;
  /* kvm_faultin_pfn(): the sequence, then the memslot being deleted (retry
   * until it is gone; a prefault, which holds the read section the
   * deletion waits for, gets -EAGAIN as upstream has it since 2025, where
   * 6.12 retried forever), a check without the lock, the pfn. */
  const unsigned long mmu_seq = __atomic_load_n(&vm->mmu_invalidate_seq, __ATOMIC_ACQUIRE);
  if (__atomic_load_n(&fault.slot->flags, __ATOMIC_ACQUIRE) & KVM_MEMSLOT_INVALID)
    return prefetch && !g_prefault_retries_invalid_slot ? -EAGAIN : RET_PF_RETRY;
  if (pfn == KMMU_PFN_FROM_HOST) {
    if (mmu_invalidate_retry_gfn(vm, mmu_seq, gfn)) return RET_PF_RETRY;
    pfn = vm->ev.host_pfn(vm->ev.ctx, gfn);
  }
  fault.pfn = pfn;
  fault.map_writable = true;
  kv->host_level = host_level;
  read_lock(&vm->kvm.mmu_lock);
  /* is_page_fault_stale(): the root was invalidated since it was loaded,
   * or an invalidation ran since the pfn was looked up. */
  if (to_shadow_page(v->arch.mmu->root.hpa)->role.invalid || mmu_invalidate_retry_gfn(vm, mmu_seq, gfn))
    r = RET_PF_RETRY;
  else
    r = kvm_tdp_mmu_map(v, &fault);
  read_unlock(&vm->kvm.mmu_lock);
  return r;
}

int kmmu_fault(struct kmmu_vm *vm, int vcpu, uint64_t gfn, uint64_t pfn, bool write, bool exec, int host_level) {
  if (vcpu < 0 || vcpu >= vm->nr_vcpus) return -EINVAL;
  fault_srcu_lock(vm);
  int r = do_fault(vm, vcpu, gfn, pfn, write, exec, host_level, false);
  fault_srcu_unlock(vm);
  return r;
}

/* kvm_vcpu_pre_fault_memory(): the read section held across the range;
 * each page kvm_tdp_map_page(), a prefetch fault retried while it says
 * RET_PF_RETRY. The host's pfn, and the host's mapping level (host_level
 * when the events give none). */
int kmmu_pre_fault_memory(struct kmmu_vm *vm, int vcpu, uint64_t gfn, uint64_t npages, int host_level) {
  if (vcpu < 0 || vcpu >= vm->nr_vcpus || !npages || gfn + npages <= gfn) return -EINVAL;
  int r = 0;
  read_lock(&vm->srcu);
  while (npages) {
    /* kvm_mmu_reload(), dropping a root a fast zap made obsolete first (the
     * ioctl never handles the reload request; 6.12's reload keeps such a
     * root, and every fault on it is stale). */
    r = mmu_load(vm, &vm->vcpus[vcpu].vcpu);
    if (r < 0) break;
    unsigned long tries = 0;
    do {
      if (++tries > 100000) {   /* signal_pending(): the VMM gives up */
        r = -EINTR;
        break;
      }
      kshim_cond_resched_spin(vm);
      r = do_fault(vm, vcpu, gfn, KMMU_PFN_FROM_HOST, false, false,
                   vm->ev.host_level ? vm->ev.host_level(vm->ev.ctx, gfn) : host_level, true);
    } while (r == RET_PF_RETRY);
    if (r == -EFAULT) r = -ENOENT;   /* no memslot: RET_PF_EMULATE */
    if (r < 0) break;
    r = 0;
    int level = PG_LEVEL_4K;
    (void)kmmu_lookup(vm, vcpu, gfn, &level);
    const uint64_t n = KVM_PAGES_PER_HPAGE(level), done = min(npages, n - (gfn & (n - 1)));
    gfn += done;
    npages -= done;
  }
  read_unlock(&vm->srcu);
  return r;
}

bool kmmu_zap_leafs(struct kmmu_vm *vm, uint64_t start, uint64_t end) {
  /* kvm_zap_gfn_range() */
  write_lock(&vm->kvm.mmu_lock);
  bool flush = kvm_tdp_mmu_zap_leafs(&vm->kvm, start, end, false);
  if (flush) kvm_flush_remote_tlbs_range(&vm->kvm, start, end - start);
  write_unlock(&vm->kvm.mmu_lock);
  return flush;
}

void kmmu_zap_all(struct kmmu_vm *vm) {
  /* kvm_mmu_zap_all() */
  write_lock(&vm->kvm.mmu_lock);
  kvm_tdp_mmu_zap_all(&vm->kvm);
  write_unlock(&vm->kvm.mmu_lock);
}

void kmmu_zap_all_unlocked(struct kmmu_vm *vm) { kvm_tdp_mmu_zap_all(&vm->kvm); }

void kmmu_zap_all_fast(struct kmmu_vm *vm) {
  /* kvm_mmu_zap_all_fast(): invalidate under the write lock, reload
   * requests to every vCPU, zap the invalid roots under the read lock. */
  write_lock(&vm->kvm.mmu_lock);
  kvm_tdp_mmu_invalidate_all_roots(&vm->kvm);
  if (vm->ev.request_reload) vm->ev.request_reload(vm->ev.ctx);
  write_unlock(&vm->kvm.mmu_lock);
  kvm_tdp_mmu_zap_invalidated_roots(&vm->kvm);
}

int kmmu_get_dirty_log(struct kmmu_vm *vm, int id, uint64_t *bits, uint64_t nwords) {
  struct kvm_memory_slot *s = slot_of(vm, id);
  if (!s) return -ENOENT;
  const uint64_t n = BITS_TO_LONGS(s->npages);
  if (nwords < n) return -EINVAL;
  /* kvm_get_dirty_log_protect() without manual protect. */
  bool flush = false;
  write_lock(&vm->kvm.mmu_lock);
  for (uint64_t i = 0; i < n; i++) {
    unsigned long mask = __atomic_exchange_n(&s->dirty_bitmap[i], 0UL, __ATOMIC_RELAXED);
    bits[i] = mask;
    if (!mask) continue;
    flush = true;
    kvm_tdp_mmu_clear_dirty_pt_masked(&vm->kvm, s, s->base_gfn + i * BITS_PER_LONG, mask, true);
  }
  write_unlock(&vm->kvm.mmu_lock);
  if (flush) kvm_flush_remote_tlbs_range(&vm->kvm, s->base_gfn, s->npages);
  return 0;
}

int kmmu_clear_dirty_masked(struct kmmu_vm *vm, int id, uint64_t gfn_offset, uint64_t mask) {
  struct kvm_memory_slot *s = slot_of(vm, id);
  if (!s || gfn_offset % BITS_PER_LONG || gfn_offset >= s->npages) return -EINVAL;
  write_lock(&vm->kvm.mmu_lock);
  kvm_tdp_mmu_clear_dirty_pt_masked(&vm->kvm, s, s->base_gfn + gfn_offset, mask, true);
  write_unlock(&vm->kvm.mmu_lock);
  kvm_flush_remote_tlbs_range(&vm->kvm, s->base_gfn, s->npages);
  return 0;
}

int kmmu_split_huge_pages(struct kmmu_vm *vm, int id, int target_level, bool shared) {
  struct kvm_memory_slot *s = slot_of(vm, id);
  if (!s || target_level < PG_LEVEL_4K || target_level >= KVM_MAX_HUGEPAGE_LEVEL) return -EINVAL;
  if (shared) read_lock(&vm->kvm.mmu_lock); else write_lock(&vm->kvm.mmu_lock);
  kvm_tdp_mmu_try_split_huge_pages(&vm->kvm, s, s->base_gfn, s->base_gfn + s->npages, target_level, shared);
  if (shared) read_unlock(&vm->kvm.mmu_lock); else write_unlock(&vm->kvm.mmu_lock);
  return 0;
}

bool kmmu_age(struct kmmu_vm *vm, uint64_t start, uint64_t end, bool test_only) {
  bool young = false;
  write_lock(&vm->kvm.mmu_lock);
  for (int i = 0; i < KMMU_MAX_SLOTS; i++) {
    struct kvm_memory_slot *s = slot_of(vm, i);
    if (!s) continue;
    uint64_t lo = max(start, s->base_gfn), hi = min(end, s->base_gfn + s->npages);
    if (lo >= hi) continue;
    struct kvm_gfn_range range = { .slot = s, .start = lo, .end = hi };
    young |= test_only ? kvm_tdp_mmu_test_age_gfn(&vm->kvm, &range) : kvm_tdp_mmu_age_gfn_range(&vm->kvm, &range);
  }
  write_unlock(&vm->kvm.mmu_lock);
  return young;
}

int kmmu_set_nx_huge_pages(struct kmmu_vm *vm, bool on) {
  if (atomic64_read(&vm->kvm.arch.tdp_mmu_pages)) return -EBUSY;
  vm->kvm.arch.disable_nx_huge_pages = !on;
  return 0;
}

/* kvm_recover_nx_huge_pages() of this tree (mmu.c, not built here): the
 * write lock, RCU across the pass, kvm_tdp_mmu_zap_sp() on each table, one
 * flush at the end. */
int kmmu_recover_nx_huge_pages(struct kmmu_vm *vm, unsigned ratio) {
  struct kvm *kvm = &vm->kvm;
  int zapped = 0;
  bool flush = false;
  read_lock(&vm->srcu);
  write_lock(&kvm->mmu_lock);
  rcu_read_lock();
  unsigned long to_zap = ratio ? (kvm->stat.nx_lpage_splits + ratio - 1) / ratio : 0;
  for (; to_zap; --to_zap) {
    if (list_empty(&kvm->arch.possible_nx_huge_pages)) break;
    struct kvm_mmu_page *sp =
        list_first_entry(&kvm->arch.possible_nx_huge_pages, struct kvm_mmu_page, possible_nx_huge_page_link);
    WARN_ON_ONCE(!sp->nx_huge_page_disallowed);
    struct kvm_memory_slot *slot = NULL;
    for (int i = 0; i < KMMU_MAX_SLOTS && !slot; i++) {
      struct kvm_memory_slot *s = slot_of(vm, i);
      if (s && sp->gfn >= s->base_gfn && sp->gfn < s->base_gfn + s->npages) slot = s;
    }
    if (slot && kvm_slot_dirty_track_enabled(slot)) {
      /* unaccount_nx_huge_page() */
      sp->nx_huge_page_disallowed = false;
      untrack_possible_nx_huge_page(kvm, sp);
    } else if (kvm_tdp_mmu_zap_sp(kvm, sp)) {
      flush = true;
      zapped++;
    }
    WARN_ON_ONCE(sp->nx_huge_page_disallowed);
  }
  if (flush) kvm_flush_remote_tlbs(kvm);
  rcu_read_unlock();
  write_unlock(&kvm->mmu_lock);
  read_unlock(&vm->srcu);
  return zapped;
}

uint64_t kmmu_lookup(struct kmmu_vm *vm, int vcpu, uint64_t gfn, int *level) {
  if (vcpu < 0 || vcpu >= vm->nr_vcpus) return 0;
  struct kvm_vcpu *v = &vm->vcpus[vcpu].vcpu;
  if (!VALID_PAGE(v->arch.mmu->root.hpa)) return 0;
  u64 sptes[PT64_ROOT_MAX_LEVEL + 1] = { 0 };
  int root_level;
  kvm_tdp_mmu_walk_lockless_begin();
  int leaf = kvm_tdp_mmu_get_walk(v, gfn << PAGE_SHIFT, sptes, &root_level);
  kvm_tdp_mmu_walk_lockless_end();
  if (leaf < 0 || !is_shadow_present_pte(sptes[leaf]) || !is_last_spte(sptes[leaf], leaf)) return 0;
  if (level) *level = leaf;
  return sptes[leaf];
}

int kmmu_peek_dirty_log(struct kmmu_vm *vm, int id, uint64_t *bits, uint64_t nwords) {
  struct kvm_memory_slot *s = slot_of(vm, id);
  if (!s) return -ENOENT;
  if (nwords < BITS_TO_LONGS(s->npages)) return -EINVAL;
  for (uint64_t i = 0; i < BITS_TO_LONGS(s->npages); i++) bits[i] = __atomic_load_n(&s->dirty_bitmap[i], __ATOMIC_RELAXED);
  return 0;
}

static void walk(u64 *pt, int level, gfn_t base, void *ctx, void (*fn)(void *, uint64_t, int, uint64_t)) {
  for (int i = 0; i < SPTE_ENT_PER_PAGE; i++) {
    const u64 spte = READ_ONCE(pt[i]);
    const gfn_t gfn = base + ((gfn_t)i << ((level - 1) * SPTE_LEVEL_BITS));
    if (!is_shadow_present_pte(spte)) continue;
    if (is_last_spte(spte, level)) fn(ctx, gfn, level, spte);
    else walk(spte_to_child_pt(spte, level), level - 1, gfn, ctx, fn);
  }
}

void kmmu_for_each_leaf(struct kmmu_vm *vm, void *ctx, void (*fn)(void *ctx, uint64_t gfn, int level, uint64_t spte)) {
  struct kvm_mmu_page *root;
  write_lock(&vm->kvm.mmu_lock);
  list_for_each_entry(root, &vm->kvm.arch.tdp_mmu_roots, link)
    if (!root->role.invalid) walk(root->spt, root->role.level, 0, ctx, fn);
  write_unlock(&vm->kvm.mmu_lock);
}

int64_t kmmu_pages(struct kmmu_vm *vm, int level) {
  if (level < PG_LEVEL_4K || level > KVM_MAX_HUGEPAGE_LEVEL) return -1;
  return atomic64_read(&vm->kvm.stat.pages[level - 1]);
}

void kmmu_get_masks(struct kmmu_masks *m) {
  kmmu_once_init();
  m->present = SPTE_MMU_PRESENT_MASK;
  m->writable = PT_WRITABLE_MASK;
  m->host_writable = shadow_host_writable_mask;
  m->mmu_writable = shadow_mmu_writable_mask;
  m->accessed = shadow_accessed_mask;
  m->dirty = shadow_dirty_mask;
  m->x = shadow_x_mask;
  m->nx = shadow_nx_mask;
  m->acc_track = shadow_acc_track_mask;
  m->base_addr = SPTE_BASE_ADDR_MASK;
}
