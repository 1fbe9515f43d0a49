/* SPDX-License-Identifier: GPL-2.0-only */
/* Locks, RCU, memory and scheduling in the kernel's spelling, over bridge.h. */
#ifndef KSHIM_KERNEL_H
#define KSHIM_KERNEL_H

#include "kshim/core.h"

#define rcu_head kshim_rcu_head

#define read_lock(l) kshim_read_lock(l)
#define read_unlock(l) kshim_read_unlock(l)
#define write_lock(l) kshim_write_lock(l)
#define write_unlock(l) kshim_write_unlock(l)
#define rwlock_needbreak(l) kshim_rwlock_needbreak(l)

/* tdp_mmu_pages_lock guards list updates that never reach a scheduling
 * point, so a plain spin lock is enough under either engine; but two steps
 * that take it change the same lists, which partial-order reduction must
 * know (kshim_touch). */
typedef struct { int v; } spinlock_t;
static inline void spin_lock_init(spinlock_t *l) { l->v = 0; }
static inline void spin_lock(spinlock_t *l) {
  kshim_touch(l);
  while (__atomic_exchange_n(&l->v, 1, __ATOMIC_ACQUIRE)) __builtin_ia32_pause();
}
static inline void spin_unlock(spinlock_t *l) { __atomic_store_n(&l->v, 0, __ATOMIC_RELEASE); }

struct mutex { int held; };
static inline void mutex_init(struct mutex *m) { m->held = 0; }

static inline void __lockdep_rw(const rwlock_t *l, int want, const char *f, int line) {
  int h = kshim_rwlock_held(l);
  if (want ? h != want : h == 0) kshim_warn("lockdep_assert_held", f, line, 0);
}
static inline void __lockdep_mutex(const struct mutex *m, const char *f, int line) {
  if (!m->held) kshim_warn("lockdep_assert_held", f, line, 0);
}
#define lockdep_assert_held_read(l) __lockdep_rw(l, 1, __FILE__, __LINE__)
#define lockdep_assert_held_write(l) __lockdep_rw(l, 2, __FILE__, __LINE__)
#define lockdep_assert_held(l) _Generic((l), rwlock_t *: __lockdep_rw, \
  struct mutex *: __lockdep_mutex_any)((void *)(l), 0, __FILE__, __LINE__)
static inline void __lockdep_mutex_any(void *m, int unused, const char *f, int line) {
  (void)unused;
  __lockdep_mutex((const struct mutex *)m, f, line);
}

#define rcu_read_lock() kshim_rcu_read_lock()
#define rcu_read_unlock() kshim_rcu_read_unlock()
#define rcu_read_lock_held() kshim_rcu_read_lock_held()
#define rcu_barrier() kshim_rcu_barrier()
#define call_rcu(h, fn) kshim_call_rcu(h, fn)
#define rcu_dereference(p) ((__typeof__(p))kshim_spte_deref((void *)(p)))
#define rcu_dereference_raw(p) (p)
#define RCU_LOCKDEP_WARN(c, m) do { } while (0)
#define rcu_assign_pointer(p, v) __atomic_store_n(&(p), (v), __ATOMIC_RELEASE)

#define need_resched() kshim_need_resched()
#define cond_resched() kshim_cond_resched()
static inline int cond_resched_rwlock_read(rwlock_t *l) {
  kshim_read_unlock(l);
  kshim_cond_resched();
  kshim_read_lock(l);
  return 1;
}
static inline int cond_resched_rwlock_write(rwlock_t *l) {
  kshim_write_unlock(l);
  kshim_cond_resched();
  kshim_write_lock(l);
  return 1;
}

#define try_cmpxchg64(p, o, n) kshim_try_cmpxchg64((u64 *)(p), (u64 *)(o), (n))
#define xchg(p, v) ({ _Static_assert(sizeof(*(p)) == 8, "xchg on an SPTE"); kshim_xchg64((u64 *)(p), (v)); })
#define atomic64_fetch_and(m, v) ((s64)kshim_fetch_and64((u64 *)&(v)->counter, (u64)(m)))

struct kmem_cache { size_t size; const char *name; };
static inline void *kmem_cache_zalloc(struct kmem_cache *c, gfp_t gfp) { (void)gfp; return kshim_zalloc(c->size); }
static inline void kmem_cache_free(struct kmem_cache *c, void *p) { (void)c; kshim_free(p); }
static inline void *kzalloc(size_t n, gfp_t gfp) { (void)gfp; return kshim_zalloc(n); }
static inline void kfree(const void *p) { kshim_free((void *)p); }
static inline unsigned long __get_free_page(gfp_t gfp) { (void)gfp; return (unsigned long)kshim_alloc_table_page(); }
static inline unsigned long get_zeroed_page(gfp_t gfp) {
  (void)gfp;
  return kshim_fail_alloc(1) ? 0 : (unsigned long)kshim_alloc_table_page();
}
static inline void free_page(unsigned long addr) { kshim_free_table_page((void *)addr); }

struct page { unsigned long private; };
#define __pa(x) ((phys_addr_t)(uintptr_t)(x))
#define __va(x) ((void *)(uintptr_t)(x))
#define pfn_to_page(pfn) ((struct page *)(uintptr_t)(((u64)(pfn) << PAGE_SHIFT) + PAGE_SIZE))
#define virt_to_page(v) pfn_to_page(__pa(v) >> PAGE_SHIFT)
#define page_private(p) ((p)->private)
#define set_page_private(p, v) ((p)->private = (v))
/* Guest memory has no struct page here: every guest pfn is RAM that is not
 * reserved, which is what kvm_is_mmio_pfn() asks. */
static inline bool pfn_valid(kvm_pfn_t pfn) { (void)pfn; return false; }
#define PageReserved(p) 0
#define is_zero_pfn(pfn) ((pfn) == 0)
#define my_zero_pfn(a) 0ull

#endif
