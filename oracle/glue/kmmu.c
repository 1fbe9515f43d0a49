// SPDX-License-Identifier: GPL-2.0-only
/*
 * The oracle's KVM around the tree's TDP MMU: what mmu.c, kvm_main.c and
 * x86.c do before and after they call into tdp_mmu.c, for one VM with a
 * direct (non-TDX) root. This file is ours; each function names the kernel
 * function whose job it does. Only the MMU proper (tdp_mmu.c, tdp_iter.c,
 * spte.c) is the tree's.
 */
#include <stdlib.h>

#include "mmu.h"
#include "mmu_internal.h"
#include "mmutrace.h"
#include "spte.h"
#include "tdp_iter.h"
#include "tdp_mmu.h"

#include "glue/internal.h"

/* ---- the globals mmu.c and x86.c own ------------------------------------ */
bool tdp_enabled = true;
bool tdp_mmu_enabled = true;
/* On: each VM says whether it wants the workaround (disable_nx_huge_pages,
 * set at creation, cleared by kmmu_set_nx_huge_pages()). */
int nx_huge_pages = 1;
struct cpuinfo_x86 boot_cpu_data = { .x86_phys_bits = 52, .x86_cache_bits = 52 };
struct kvm_host_values kvm_host = { .maxphyaddr = 52 };
static struct kmem_cache header_cache = { .size = sizeof(struct kvm_mmu_page), .name = "kvm_mmu_page_header" };
struct kmem_cache *mmu_page_header_cache = &header_cache;

/* kvm_x86_ops with the tree's defaults: an optional op is NULL, a RET0 op
 * returns 0, a mandatory op the oracle does not bind warns when called (the
 * MMU reached something of vmx.c this glue does not model). */
static u64 op_ret0(void) { return 0; }
#define KSHIM_MISSING(name) \
  static u64 missing_##name(void) { kshim_warn("kvm_x86_ops." #name " is not bound by the oracle", __FILE__, __LINE__, 1); return 0; }
#define KSHIM_NONE(name)
MIRRORMMU_X86_OPS(KSHIM_MISSING, KSHIM_NONE, KSHIM_NONE)
#undef KSHIM_MISSING
#undef KSHIM_NONE
struct kvm_x86_ops kvm_x86_ops = {
#define KSHIM_OP(name) .name = (u64 (*)())missing_##name,
#define KSHIM_OPT(name) .name = NULL,
#define KSHIM_RET0(name) .name = (u64 (*)())op_ret0,
  MIRRORMMU_X86_OPS(KSHIM_OP, KSHIM_OPT, KSHIM_RET0)
#undef KSHIM_OP
#undef KSHIM_OPT
#undef KSHIM_RET0
};

/* The memory type of a leaf: write-back, guest PAT honoured, as
 * tdx_get_mt_mask() gives a TD's shared EPT, the direct root the model
 * stands for. (6.12's vmx_get_mt_mask() would add VMX_EPT_IPAT_BIT under the
 * default IGNORE_GUEST_PAT quirk: docs/oracle.md lists it.) */
static u64 td_get_mt_mask(struct kvm_vcpu *vcpu, gfn_t gfn, bool is_mmio) {
  (void)vcpu; (void)gfn;
  if (is_mmio) return (u64)X86_MEMTYPE_UC << VMX_EPT_MT_EPTE_SHIFT;
  return (u64)X86_MEMTYPE_WB << VMX_EPT_MT_EPTE_SHIFT;
}

/* One oracle VM at a time: the tree's WARNs and kvm_set_pfn_dirty() have no
 * struct kvm to say which VM they belong to. */
struct kmmu_vm *g_vm;
int64_t g_pgtable_pages;

void kmmu_once_init(void) {
  static bool done;
  if (done) return;
  done = true;
  kvm_x86_ops.get_mt_mask = (u64 (*)())td_get_mt_mask;
  /* What vmx_init() -> kvm_mmu_set_ept_masks() does on a host with EPT A/D
   * bits and execute-only support. */
  kvm_mmu_spte_module_init();
  kvm_mmu_reset_all_pte_masks();
  kvm_mmu_set_ept_masks(true, true);
}

const char *kmmu_tree_version(void) {
  return __stringify(MIRRORMMU_TREE_VERSION) "." __stringify(MIRRORMMU_TREE_PATCHLEVEL) "." __stringify(MIRRORMMU_TREE_SUBLEVEL);
}

/* ---- what kvm_main.c and x86.c provide ---------------------------------- */
void kshim_kvm_bug(struct kvm *kvm, const char *cond, const char *file, int line) {
  (void)kvm;
  if (g_vm && g_vm->ev.warn) g_vm->ev.warn(g_vm->ev.ctx, cond, file, line, 1);
}
void kshim_report_warn(const char *cond, const char *file, int line) {
  if (g_vm && g_vm->ev.warn) g_vm->ev.warn(g_vm->ev.ctx, cond, file, line, 0);
}
/* trace_kvm_tdp_mmu_spte_changed(): every SPTE change handle_changed_spte()
 * sees, which is what the checker and the transition table consume. */
void kshim_trace_kvm_tdp_mmu_spte_changed(int as_id, gfn_t gfn, int level, u64 old_spte, u64 new_spte) {
  if (g_vm && g_vm->ev.spte_changed)
    g_vm->ev.spte_changed(g_vm->ev.ctx, as_id, gfn, level, old_spte, new_spte,
                          kshim_rwlock_held(&g_vm->kvm.mmu_lock) == 1);
}
void kvm_flush_remote_tlbs(struct kvm *kvm) {
  struct kmmu_vm *vm = container_of(kvm, struct kmmu_vm, kvm);
  if (vm->ev.flush) vm->ev.flush(vm->ev.ctx, 0, 0);
}
void kvm_flush_remote_tlbs_range(struct kvm *kvm, gfn_t gfn, u64 nr_pages) {
  struct kmmu_vm *vm = container_of(kvm, struct kmmu_vm, kvm);
  if (vm->ev.flush) vm->ev.flush(vm->ev.ctx, gfn, nr_pages);
}
void mark_page_dirty_in_slot(struct kvm *kvm, const struct kvm_memory_slot *slot, gfn_t gfn) {
  (void)kvm;
  if (!slot || !slot->dirty_bitmap) return;
  set_bit_le(gfn - slot->base_gfn, slot->dirty_bitmap);
}
/* Guest pages have no struct page here; the tree's calls are counted by the
 * spte_changed events they accompany. */
void kvm_set_pfn_dirty(kvm_pfn_t pfn) { (void)pfn; }
void kvm_set_pfn_accessed(kvm_pfn_t pfn) { (void)pfn; }
void kvm_account_pgtable_pages(void *virt, int nr) {
  (void)virt;
  __atomic_fetch_add(&g_pgtable_pages, nr, __ATOMIC_RELAXED);
}
struct kvm_memslots *kvm_vcpu_memslots(struct kvm_vcpu *vcpu) {
  return &container_of(vcpu->kvm, struct kmmu_vm, kvm)->memslots;
}
struct kvm_memory_slot *kvm_vcpu_gfn_to_memslot(struct kvm_vcpu *vcpu, gfn_t gfn) {
  struct kmmu_vm *vm = container_of(vcpu->kvm, struct kmmu_vm, kvm);
  for (int i = 0; i < KMMU_MAX_SLOTS; i++)
    if (vm->used[i] && gfn >= vm->slots[i].base_gfn && gfn < vm->slots[i].base_gfn + vm->slots[i].npages)
      return &vm->slots[i];
  return NULL;
}
void kvm_prepare_memory_fault_exit(struct kvm_vcpu *vcpu, gpa_t gpa, gpa_t size, bool is_write, bool is_exec,
                                   bool is_private) {
  (void)vcpu; (void)gpa; (void)size; (void)is_write; (void)is_exec; (void)is_private;
}

/* kvm_mmu_memory_cache_alloc(): the caller topped the cache up outside the
 * lock; an empty cache is a bug the kernel WARNs about and survives. */
static void *cache_new_obj(struct kvm_mmu_memory_cache *mc) {
  if (mc->kmem_cache) return kmem_cache_zalloc(mc->kmem_cache, GFP_KERNEL_ACCOUNT);
  u64 *page = kshim_alloc_table_page();
  if (page && mc->init_value)
    for (int i = 0; i < 512; i++) page[i] = mc->init_value;
  return page;
}
void *kvm_mmu_memory_cache_alloc(struct kvm_mmu_memory_cache *mc) {
  if (WARN_ON_ONCE(!mc->nobjs)) return cache_new_obj(mc);
  return mc->objects[--mc->nobjs];
}
static int topup(struct kvm_mmu_memory_cache *mc, int min) {
  if (mc->nobjs >= min) return 0;
  if (kshim_fail_alloc(2)) return -ENOMEM;
  while (mc->nobjs < mc->capacity) {
    void *o = cache_new_obj(mc);
    if (!o) return mc->nobjs >= min ? 0 : -ENOMEM;
    mc->objects[mc->nobjs++] = o;
  }
  return 0;
}
void kmmu_cache_free(struct kvm_mmu_memory_cache *mc) {
  while (mc->nobjs) {
    void *o = mc->objects[--mc->nobjs];
    if (mc->kmem_cache) kmem_cache_free(mc->kmem_cache, o);
    else kshim_free_table_page(o);
  }
  free(mc->objects);
  mc->objects = NULL;
}
/* mmu_topup_memory_caches(vcpu, false) for a TDP MMU vCPU. */
int mmu_topup_memory_caches(struct kvm_vcpu *vcpu) {
  int r = topup(&vcpu->arch.mmu_shadow_page_cache, PT64_ROOT_MAX_LEVEL);
  if (r) return r;
  return topup(&vcpu->arch.mmu_page_header_cache, PT64_ROOT_MAX_LEVEL);
}

/* ---- what mmu.c provides to tdp_mmu.c ----------------------------------- */
int mmu_try_to_unsync_pages(struct kvm *kvm, const struct kvm_memory_slot *slot, gfn_t gfn, bool can_unsync,
                            bool prefetch) {
  /* Only shadow pages are ever unsynced; a TDP-only VM has none. */
  (void)kvm; (void)slot; (void)gfn; (void)can_unsync; (void)prefetch;
  return 0;
}
void track_possible_nx_huge_page(struct kvm *kvm, struct kvm_mmu_page *sp) {
  if (!list_empty(&sp->possible_nx_huge_page_link)) return;
  ++kvm->stat.nx_lpage_splits;
  list_add_tail(&sp->possible_nx_huge_page_link, &kvm->arch.possible_nx_huge_pages);
}
void untrack_possible_nx_huge_page(struct kvm *kvm, struct kvm_mmu_page *sp) {
  if (list_empty(&sp->possible_nx_huge_page_link)) return;
  --kvm->stat.nx_lpage_splits;
  list_del_init(&sp->possible_nx_huge_page_link);
}
/* lpage_info: a huge page is allowed where the slot covers it whole. */
static bool lpage_disallowed(const struct kvm_memory_slot *slot, gfn_t gfn, int level) {
  gfn_t base = gfn_round_for_level(gfn, level);
  return base < slot->base_gfn || base + KVM_PAGES_PER_HPAGE(level) > slot->base_gfn + slot->npages;
}
static int max_mapping_level(const struct kvm_memory_slot *slot, gfn_t gfn, int max_level, int host_level) {
  max_level = min(max_level, KVM_MAX_HUGEPAGE_LEVEL);
  for (; max_level > PG_LEVEL_4K; max_level--)
    if (!lpage_disallowed(slot, gfn, max_level)) break;
  return min(host_level, max_level);
}
int kvm_mmu_max_mapping_level(struct kvm *kvm, const struct kvm_memory_slot *slot, gfn_t gfn, int max_level) {
  (void)kvm;
  /* zap_collapsible asks with no fault at hand: the host's mapping level. */
  struct kmmu_vm *vm = g_vm;
  const int host = vm && vm->ev.host_level ? vm->ev.host_level(vm->ev.ctx, gfn) : PG_LEVEL_1G;
  return max_mapping_level(slot, gfn, max_level, host);
}
void kvm_mmu_hugepage_adjust(struct kvm_vcpu *vcpu, struct kvm_page_fault *fault) {
  struct kvm_memory_slot *slot = fault->slot;
  fault->huge_page_disallowed = fault->exec && fault->nx_huge_page_workaround_enabled;
  if (unlikely(fault->max_level == PG_LEVEL_4K)) return;
  if (kvm_slot_dirty_track_enabled(slot)) return;
  fault->req_level = max_mapping_level(slot, fault->gfn, fault->max_level,
                                       container_of(vcpu, struct kmmu_vcpu, vcpu)->host_level);
  if (fault->req_level == PG_LEVEL_4K || fault->huge_page_disallowed) return;
  fault->goal_level = fault->req_level;
  fault->pfn &= ~(KVM_PAGES_PER_HPAGE(fault->goal_level) - 1);
}
void disallowed_hugepage_adjust(struct kvm_page_fault *fault, u64 spte, int cur_level) {
  if (cur_level > PG_LEVEL_4K && cur_level == fault->goal_level && is_shadow_present_pte(spte) &&
      !is_large_pte(spte) && spte_to_child_sp(spte)->nx_huge_page_disallowed) {
    u64 page_mask = KVM_PAGES_PER_HPAGE(cur_level) - KVM_PAGES_PER_HPAGE(cur_level - 1);
    fault->pfn |= fault->gfn & page_mask;
    fault->goal_level--;
  }
}
