/* SPDX-License-Identifier: GPL-2.0-only */
/* Doubly linked lists with the kernel's interface; the _rcu variants publish
 * with release stores, which is what their readers rely on. */
#ifndef KSHIM_LIST_H
#define KSHIM_LIST_H

struct list_head {
  struct list_head *next, *prev;
};
struct hlist_node {
  struct hlist_node *next, **pprev;
};

#define LIST_HEAD_INIT(n) { &(n), &(n) }
static inline void INIT_LIST_HEAD(struct list_head *l) { l->next = l; l->prev = l; }
static inline bool list_empty(const struct list_head *h) { return __atomic_load_n(&h->next, __ATOMIC_ACQUIRE) == h; }
static inline void __list_add(struct list_head *n, struct list_head *prev, struct list_head *next) {
  n->next = next;
  n->prev = prev;
  next->prev = n;
  __atomic_store_n(&prev->next, n, __ATOMIC_RELEASE);
}
static inline void list_add(struct list_head *n, struct list_head *h) { __list_add(n, h, h->next); }
static inline void list_add_tail(struct list_head *n, struct list_head *h) { __list_add(n, h->prev, h); }
#define list_add_rcu list_add
static inline void __list_del(struct list_head *prev, struct list_head *next) {
  next->prev = prev;
  __atomic_store_n(&prev->next, next, __ATOMIC_RELEASE);
}
static inline void list_del(struct list_head *e) { __list_del(e->prev, e->next); e->next = e->prev = NULL; }
/* An RCU reader may still be on the entry: keep its next pointer. */
static inline void list_del_rcu(struct list_head *e) { __list_del(e->prev, e->next); e->prev = NULL; }
static inline void list_del_init(struct list_head *e) { __list_del(e->prev, e->next); INIT_LIST_HEAD(e); }

#define list_entry(ptr, type, member) container_of(ptr, type, member)
#define list_first_entry(h, type, member) list_entry((h)->next, type, member)
#define list_next_entry(pos, member) list_entry((pos)->member.next, __typeof__(*(pos)), member)
#define list_entry_is_head(pos, h, member) (&(pos)->member == (h))
#define list_for_each_entry(pos, h, member) \
  for (pos = list_first_entry(h, __typeof__(*pos), member); !list_entry_is_head(pos, h, member); \
       pos = list_next_entry(pos, member))
#define list_for_each_entry_safe(pos, n, h, member) \
  for (pos = list_first_entry(h, __typeof__(*pos), member), n = list_next_entry(pos, member); \
       !list_entry_is_head(pos, h, member); pos = n, n = list_next_entry(n, member))
#define list_for_each_entry_rcu(pos, h, member, ...) list_for_each_entry(pos, h, member)
#define list_first_or_null_rcu(h, type, member) ({ \
  struct list_head *__h = (h); struct list_head *__n = __atomic_load_n(&__h->next, __ATOMIC_ACQUIRE); \
  __n != __h ? list_entry(__n, type, member) : NULL; })
#define list_next_or_null_rcu(h, ptr, type, member) ({ \
  struct list_head *__h = (h); struct list_head *__n = __atomic_load_n(&(ptr)->next, __ATOMIC_ACQUIRE); \
  __n != __h ? list_entry(__n, type, member) : NULL; })

#endif
