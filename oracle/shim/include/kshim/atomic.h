/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef KSHIM_ATOMIC_H
#define KSHIM_ATOMIC_H

typedef struct { int counter; } atomic_t;
typedef struct { s64 counter; } atomic64_t;
typedef struct { atomic_t refs; } refcount_t;

#define ATOMIC_INIT(i) { (i) }
static inline int atomic_read(const atomic_t *v) { return __atomic_load_n(&v->counter, __ATOMIC_RELAXED); }
static inline void atomic_set(atomic_t *v, int i) { __atomic_store_n(&v->counter, i, __ATOMIC_RELAXED); }
static inline void atomic_inc(atomic_t *v) { __atomic_fetch_add(&v->counter, 1, __ATOMIC_RELAXED); }
static inline void atomic_dec(atomic_t *v) { __atomic_fetch_sub(&v->counter, 1, __ATOMIC_RELAXED); }
static inline s64 atomic64_read(const atomic64_t *v) { return __atomic_load_n(&v->counter, __ATOMIC_RELAXED); }
static inline void atomic64_set(atomic64_t *v, s64 i) { __atomic_store_n(&v->counter, i, __ATOMIC_RELAXED); }
static inline void atomic64_inc(atomic64_t *v) { __atomic_fetch_add(&v->counter, 1, __ATOMIC_RELAXED); }
static inline void atomic64_dec(atomic64_t *v) { __atomic_fetch_sub(&v->counter, 1, __ATOMIC_RELAXED); }
static inline void atomic64_add(s64 i, atomic64_t *v) { __atomic_fetch_add(&v->counter, i, __ATOMIC_RELAXED); }
static inline void atomic64_sub(s64 i, atomic64_t *v) { __atomic_fetch_sub(&v->counter, i, __ATOMIC_RELAXED); }

static inline void refcount_set(refcount_t *r, int n) { __atomic_store_n(&r->refs.counter, n, __ATOMIC_RELEASE); }
static inline unsigned int refcount_read(const refcount_t *r) { return __atomic_load_n(&r->refs.counter, __ATOMIC_ACQUIRE); }
static inline bool refcount_inc_not_zero(refcount_t *r) {
  int old = __atomic_load_n(&r->refs.counter, __ATOMIC_RELAXED);
  do {
    if (!old) return false;
  } while (!__atomic_compare_exchange_n(&r->refs.counter, &old, old + 1, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
  return true;
}
static inline void refcount_inc(refcount_t *r) { __atomic_fetch_add(&r->refs.counter, 1, __ATOMIC_RELAXED); }
static inline bool refcount_dec_and_test(refcount_t *r) { return __atomic_sub_fetch(&r->refs.counter, 1, __ATOMIC_ACQ_REL) == 0; }

#endif
