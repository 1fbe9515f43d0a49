/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The oracle's C interface: a VM whose TDP MMU is the kernel tree's own
 * tdp_mmu.c, driven the way mmu.c, kvm_main.c and x86.c drive it. The glue
 * behind it (glue/kmmu.c) is ours; every function it calls on the MMU is the
 * tree's. Used from C++ through oracle/kernel_mmu.h.
 */
#ifndef MIRRORMMU_KMMU_H
#define MIRRORMMU_KMMU_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct kmmu_vm;

/* What the real code did, as the tree's tracepoints and flush calls say it. */
struct kmmu_events {
  void *ctx;
  /* trace_kvm_tdp_mmu_spte_changed(), with the mode the caller holds
   * mmu_lock in (shared: for read) */
  void (*spte_changed)(void *ctx, int as_id, uint64_t gfn, int level, uint64_t old_spte, uint64_t new_spte,
                       bool shared);
  /* kvm_flush_remote_tlbs() (npages == 0) and kvm_flush_remote_tlbs_range() */
  void (*flush)(void *ctx, uint64_t gfn, uint64_t npages);
  /* WARN_ON*, KVM_BUG_ON, lockdep assertions; BUG_ON stops the operation */
  void (*warn)(void *ctx, const char *cond, const char *file, int line, int kvm_bug);
  /* The hardware's side (the CPU's caches live in the caller): a
   * page-table page going back to the allocator; kvm_mmu_load()'s
   * flush_tlb_current on a vCPU; kvm_make_all_cpus_request(
   * KVM_REQ_MMU_FREE_OBSOLETE_ROOTS), which returns once every vCPU in the
   * guest has left it. Any may be NULL. */
  void (*table_freed)(void *ctx, uint64_t table);
  void (*flush_current)(void *ctx, int vcpu);
  void (*request_reload)(void *ctx);
  /* hva_to_pfn(): the frame backing gfn in the host's mapping now. */
  uint64_t (*host_pfn)(void *ctx, uint64_t gfn);
  /* host_pfn_mapping_level() where no fault says it (huge page recovery). */
  int (*host_level)(void *ctx, uint64_t gfn);
};

/* kmmu_fault()'s pfn: look it up with host_pfn() after sampling the
 * invalidation sequence, as kvm_faultin_pfn() does. */
#define KMMU_PFN_FROM_HOST (~0ULL)

/* The tree the oracle was built from, e.g. "6.12.117". */
const char *kmmu_tree_version(void);

struct kmmu_vm *kmmu_vm_create(const struct kmmu_events *ev, int nr_vcpus);
/* kvm_mmu_uninit_tdp_mmu() after the vCPUs' roots are put. Returns the
 * page-table pages still accounted (0 unless the MMU leaked). */
int64_t kmmu_vm_destroy(struct kmmu_vm *vm);

/* Forget the VM without freeing it (its threads are parked for good); a new
 * one may be created afterwards. */
void kmmu_vm_abandon(struct kmmu_vm *vm);

/* KVM_SET_USER_MEMORY_REGION for one address space 0 slot. Deleting a slot
 * zaps it (kvm_arch_flush_shadow_memslot without the zap-all quirk). */
int kmmu_memslot_set(struct kmmu_vm *vm, int id, uint64_t base_gfn, uint64_t npages, bool dirty_log);
int kmmu_memslot_delete(struct kmmu_vm *vm, int id);
/* Turning dirty logging on write-protects the slot (kvm_mmu_slot_apply_flags
 * without eager splitting); off leaves the small pages (no recovery here). */
int kmmu_memslot_dirty_log(struct kmmu_vm *vm, int id, bool on);

/* A TDP fault: kvm_tdp_mmu_page_fault() with the pfn already faulted in.
 * host_level is the size of the host mapping of pfn (host_pfn_mapping_level).
 * Returns RET_PF_* (>= 0) or a negative errno. */
int kmmu_fault(struct kmmu_vm *vm, int vcpu, uint64_t gfn, uint64_t pfn, bool write, bool exec, int host_level);

/* kvm_mmu_notifier_invalidate_range_start() and _end() for gfns
 * [start, end) of the slots they overlap. */
void kmmu_invalidate_range_start(struct kmmu_vm *vm, uint64_t start, uint64_t end);
void kmmu_invalidate_range_end(struct kmmu_vm *vm, uint64_t start, uint64_t end);
/* A planted bug: fast_page_fault() restores Writable without logging the
 * page. */
void kmmu_plant_fast_pf_no_mark_dirty(bool on);
/* KVM_PRE_FAULT_MEMORY for [gfn, gfn + npages): 0, -ENOENT (no memslot),
 * -EAGAIN (a memslot being deleted), or another -errno. */
int kmmu_pre_fault_memory(struct kmmu_vm *vm, int vcpu, uint64_t gfn, uint64_t npages, int host_level);
/* A planted bug, 6.12's: a prefault retries on a memslot being deleted. */
void kmmu_plant_prefault_retries_invalid_slot(bool on);
/* A planted bug: faults never ask mmu_invalidate_retry_gfn(). */
void kmmu_plant_no_invalidate_retry(bool on);

bool kmmu_zap_leafs(struct kmmu_vm *vm, uint64_t start, uint64_t end);
void kmmu_zap_all(struct kmmu_vm *vm);
/* kvm_mmu_zap_all_fast(): invalidate every root, zap them shared. */
void kmmu_zap_all_fast(struct kmmu_vm *vm);
/* KVM_GET_DIRTY_LOG with manual protect off: collect and re-protect. Writes
 * the slot's bitmap (one bit per page) to bits, clears it. */
int kmmu_get_dirty_log(struct kmmu_vm *vm, int id, uint64_t *bits, uint64_t nwords);
/* kvm_tdp_mmu_clear_dirty_pt_masked(), as KVM_CLEAR_DIRTY_LOG does. */
int kmmu_clear_dirty_masked(struct kmmu_vm *vm, int id, uint64_t gfn_offset, uint64_t mask);
int kmmu_split_huge_pages(struct kmmu_vm *vm, int id, int target_level, bool shared);
bool kmmu_age(struct kmmu_vm *vm, uint64_t start, uint64_t end, bool test_only);
/* The VM's nx_huge_pages before anything is mapped (-EBUSY after), and one
 * pass of this tree's NX recovery worker: how many tables it zapped. */
int kmmu_set_nx_huge_pages(struct kmmu_vm *vm, bool on);
int kmmu_recover_nx_huge_pages(struct kmmu_vm *vm, unsigned ratio);

/* KVM_REQ_MMU_FREE_OBSOLETE_ROOTS then kvm_mmu_reload() on a vCPU: 1 if a
 * root was loaded, 0 if the old one stays, or -errno. */
int kmmu_vcpu_reload(struct kmmu_vm *vm, int vcpu);

/* The CPU's walk of the vCPU's loaded root (no lock; the root may be
 * invalid): the tables it reads, root first, as their addresses, and the
 * leaf if a present one maps gfn. */
struct kmmu_hw_walk { bool leaf, writable, dirty, executable; int level; uint64_t pfn; uint64_t tables[5]; int ntables; };
/* access: 0 only looks; 1 a read, 2 a write, which set Accessed (and Dirty
 * on a write through a writable leaf) as EPT A/D does. */
void kmmu_cpu_walk(struct kmmu_vm *vm, int vcpu, uint64_t gfn, int access, struct kmmu_hw_walk *w);

/* kvm_tdp_mmu_get_walk() between walk_lockless_begin/end, as the CPU's
 * walk of the vCPU's root: the leaf SPTE (0 if none) and its level. */
uint64_t kmmu_lookup(struct kmmu_vm *vm, int vcpu, uint64_t gfn, int *level);
/* The slot's dirty bitmap as it stands (not collected). */
int kmmu_peek_dirty_log(struct kmmu_vm *vm, int id, uint64_t *bits, uint64_t nwords);

/* A planted locking bug, for the tests that show a WARN of the tree reaches
 * the report: kvm_tdp_mmu_zap_all() without mmu_lock. */
void kmmu_zap_all_unlocked(struct kmmu_vm *vm);
/* Another, for the explorer: faults stop reading the memslots inside the
 * SRCU-like read section, so enabling dirty logging can write-protect
 * before a racing fault installs a writable leaf it never logs. */
void kmmu_plant_fault_outside_srcu(bool on);

/* Every present leaf of every valid root, in gfn order per root. */
void kmmu_for_each_leaf(struct kmmu_vm *vm, void *ctx,
                        void (*fn)(void *ctx, uint64_t gfn, int level, uint64_t spte));
/* kvm->stat.pages[level - 1] */
int64_t kmmu_pages(struct kmmu_vm *vm, int level);
/* The SPTE bit masks the tree set up (shadow_*_mask), for decoding. */
struct kmmu_masks { uint64_t present, writable, host_writable, mmu_writable, accessed, dirty, x, nx, acc_track, base_addr; };
void kmmu_get_masks(struct kmmu_masks *m);

#ifdef __cplusplus
}
#endif
#endif
