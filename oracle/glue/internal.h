/* SPDX-License-Identifier: GPL-2.0-only */
/* The glue's own state, shared by its files (kmmu.c: what mmu.c and
 * kvm_main.c provide; vm.c: the VM and the operations of kmmu.h). */
#ifndef MIRRORMMU_ORACLE_GLUE_INTERNAL_H
#define MIRRORMMU_ORACLE_GLUE_INTERNAL_H

#include "kmmu.h"

#define KMMU_MAX_SLOTS 32
#define KMMU_CACHE_CAPACITY 40   /* KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE */

/* ---- the VM ------------------------------------------------------------- */
struct kmmu_vcpu {
  struct kvm_vcpu vcpu;
  int host_level;   /* host_pfn_mapping_level() of the fault being handled */
};

struct kmmu_vm {
  struct kvm kvm;
  struct kmmu_events ev;
  struct kmmu_vcpu *vcpus;
  int nr_vcpus;
  struct kvm_memslots memslots;
  /* kvm->srcu as memslot updates use it: a fault reads the slots inside a
   * read-side section, an update publishes and then waits for every reader
   * (synchronize_srcu) before it acts on the MMU. An rwlock gives the same
   * ordering: faults take it shared, updates exclusive. */
  rwlock_t srcu;
  struct kvm_memory_slot slots[KMMU_MAX_SLOTS];
  bool used[KMMU_MAX_SLOTS];
  /* kvm->mmu_invalidate_*, as kvm_main.c keeps them (the shim's struct kvm
   * has no notifier): written under mmu_lock for write, read by faults
   * with and without it. */
  unsigned long mmu_invalidate_seq;
  long mmu_invalidate_in_progress;
  gfn_t mmu_invalidate_range_start, mmu_invalidate_range_end;
};

extern struct kmmu_vm *g_vm;
extern int64_t g_pgtable_pages;
void kmmu_once_init(void);
int mmu_topup_memory_caches(struct kvm_vcpu *vcpu);
void kmmu_cache_free(struct kvm_mmu_memory_cache *mc);
void kshim_report_warn(const char *cond, const char *file, int line);

#endif
