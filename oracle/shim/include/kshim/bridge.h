/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The seam between the kernel's code and mirrormmu: locks, RCU, yields, SPTE
 * accesses, page-table memory, failure points and reports. Implemented in
 * oracle/bridge.cpp on top of src/sync, so every place the real tdp_mmu.c
 * could interleave is a scheduling point of the deterministic engine.
 */
#ifndef KSHIM_BRIDGE_H
#define KSHIM_BRIDGE_H

/* mmu_lock: a mirrormmu sync::MmuLock behind an opaque pointer. */
typedef struct { void *impl; } rwlock_t;
void kshim_rwlock_init(rwlock_t *l);
void kshim_rwlock_destroy(rwlock_t *l);
void kshim_read_lock(rwlock_t *l);
void kshim_read_unlock(rwlock_t *l);
void kshim_write_lock(rwlock_t *l);
void kshim_write_unlock(rwlock_t *l);
int kshim_rwlock_held(const rwlock_t *l);   /* 0 none, 1 read, 2 write */
bool kshim_rwlock_needbreak(const rwlock_t *l);

/* RCU: liburcu natively, the engine's model under the deterministic engine.
 * The head reserves room for liburcu's head and the callback to trampoline. */
struct kshim_rcu_head { void *space[3]; };
void kshim_rcu_read_lock(void);
void kshim_rcu_read_unlock(void);
bool kshim_rcu_read_lock_held(void);
void kshim_call_rcu(struct kshim_rcu_head *head, void (*fn)(struct kshim_rcu_head *));
void kshim_rcu_barrier(void);

/* need_resched(): only the deterministic engine ever says yes (a forced
 * yield); cond_resched() is a scheduling point. */
bool kshim_need_resched(void);
void kshim_cond_resched(void);
/* cond_resched() in a loop that waits for another thread's progress (a
 * fault retried): the engine lets the others run first. */
void kshim_cond_resched_spin(const void *object);
/* The running step changes state no scheduling point names (see sched_touch). */
void kshim_touch(const void *object);

/* SPTE accesses: each is a scheduling point, the engine checks it against
 * page tables freed after a grace period. */
void *kshim_spte_deref(void *sptep);
bool kshim_try_cmpxchg64(u64 *p, u64 *old, u64 v);
u64 kshim_xchg64(u64 *p, u64 v);
u64 kshim_fetch_and64(u64 *p, u64 mask);

/* Page-table pages: 8 KiB blocks, the table in the first 4 KiB and its
 * struct page (page_private) in the second, so __pa is the identity and
 * pfn_to_page needs no lookup. Freed through the engine's quarantine. */
void *kshim_alloc_table_page(void);
void kshim_free_table_page(void *page);
/* The glue tells the VM's hardware model a table page is being freed. */
void kmmu_table_freed(void *page);
void *kshim_zalloc(size_t size);
void kshim_free(void *p);
/* Failure points: 1 = allocation of a page table for a split, 2 = memory
 * cache top-up. Non-zero when the explorer injects a failure here. */
bool kshim_fail_alloc(int site);

#endif
