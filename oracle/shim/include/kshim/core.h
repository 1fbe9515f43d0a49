/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The kernel environment the TDP MMU expects, rebuilt in user space: types,
 * compiler attributes, bit operations, lists, atomics, WARN/BUG. Everything
 * that schedules or waits (mmu_lock, RCU, cond_resched, SPTE accesses) is
 * routed to mirrormmu's src/sync through kshim/bridge.h, so the real code
 * runs on the native and the deterministic engine alike.
 */
#ifndef KSHIM_CORE_H
#define KSHIM_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
/* The kernel has no errno variable, and mmutrace.h names a parameter so. */
#undef errno

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int8_t s8;
typedef int16_t s16;
typedef int32_t s32;
typedef int64_t s64;
typedef u64 gfn_t;
typedef u64 gpa_t;
typedef u64 gva_t;
typedef u64 hpa_t;
typedef u64 hfn_t;
typedef unsigned long hva_t;
typedef u64 kvm_pfn_t;
typedef unsigned int gfp_t;
typedef u64 phys_addr_t;

#define __rcu
#define __read_mostly
#define __init
#define __ro_after_init
#define __exit
#undef __always_inline
#define __always_inline inline __attribute__((always_inline))
#define __must_check __attribute__((warn_unused_result))
#define __maybe_unused __attribute__((unused))
#define __aligned(x) __attribute__((aligned(x)))
#define noinline __attribute__((noinline))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define __stringify_1(x) #x
#define __stringify(x) __stringify_1(x)
#define EXPORT_SYMBOL_GPL(x)
#define EXPORT_SYMBOL(x)
/* The kernel configuration the oracle is built as: 64-bit, lockdep's
 * assertions on. CONFIG_KVM_PROVE_MMU stays off unless the build asks for it
 * (MIRRORMMU_KVM_PROVE_MMU): it changes what the MMU does, not only what it
 * checks (tdp_mmu_zap_root() then skips its 4K and 2M passes), and the
 * model follows a production kernel. */
#define CONFIG_X86_64 1
#define CONFIG_PROVE_LOCKING 1
#ifdef MIRRORMMU_KVM_PROVE_MMU
#define CONFIG_KVM_PROVE_MMU 1
#endif
#define __ARG_PLACEHOLDER_1 0,
#define __take_second_arg(ignored, val, ...) val
#define ____is_defined(arg1_or_junk) __take_second_arg(arg1_or_junk 1, 0)
#define ___is_defined(val) ____is_defined(__ARG_PLACEHOLDER_##val)
#define IS_ENABLED(option) ___is_defined(option)
#define BUILD_BUG_ON(c) ((void)sizeof(c))
#define BUILD_BUG_ON_INVALID(e) ((void)(sizeof((long)(e))))
#define static_assert(c, ...) _Static_assert(c, #c)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#define min(a, b) ({ __typeof__(a) _a = (a); __typeof__(b) _b = (b); _a < _b ? _a : _b; })
#define max(a, b) ({ __typeof__(a) _a = (a); __typeof__(b) _b = (b); _a > _b ? _a : _b; })
#define min_t(t, a, b) min((t)(a), (t)(b))
#define max_t(t, a, b) max((t)(a), (t)(b))
#define ALIGN(x, a) (((x) + (a) - 1) & ~((__typeof__(x))(a) - 1))
#define IS_ALIGNED(x, a) (((x) & ((__typeof__(x))(a) - 1)) == 0)
#define READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v) do { *(volatile __typeof__(x) *)&(x) = (v); } while (0)
#define smp_load_acquire(p) __atomic_load_n(p, __ATOMIC_ACQUIRE)
#define smp_store_release(p, v) __atomic_store_n(p, v, __ATOMIC_RELEASE)
#define smp_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define smp_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)
#define smp_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define cpu_relax() __builtin_ia32_pause()
#define barrier() __asm__ __volatile__("" ::: "memory")
#define fallthrough __attribute__((__fallthrough__))
#define pr_warn_ratelimited(...) do { } while (0)
#define pr_err(...) do { } while (0)
#define pr_warn(...) do { } while (0)
#define pr_info(...) do { } while (0)
#define pr_debug(...) do { } while (0)
#define module_param_named(...)
#define module_param(...)
#define might_sleep() do { } while (0)

#define BIT(n) (1UL << (n))
#define BIT_ULL(n) (1ULL << (n))
#define GENMASK_ULL(h, l) (((~0ULL) << (l)) & (~0ULL >> (63 - (h))))
#define GENMASK(h, l) (((~0UL) << (l)) & (~0UL >> (63 - (h))))
#define BITS_PER_LONG 64
#define BITS_TO_LONGS(n) (((n) + BITS_PER_LONG - 1) / BITS_PER_LONG)
#define DECLARE_BITMAP(name, bits) unsigned long name[BITS_TO_LONGS(bits)]
#define __ffs(x) ((unsigned long)__builtin_ctzl(x))
#define ffs(x) __builtin_ffs(x)
#define fls64(x) ((x) ? 64 - __builtin_clzll(x) : 0)
#define hweight64(x) __builtin_popcountll(x)
static inline void __set_bit(long nr, unsigned long *addr) { addr[nr / 64] |= 1UL << (nr % 64); }
static inline void __clear_bit(long nr, unsigned long *addr) { addr[nr / 64] &= ~(1UL << (nr % 64)); }
static inline bool test_bit(long nr, const unsigned long *addr) { return (addr[nr / 64] >> (nr % 64)) & 1; }
static inline void set_bit_le(long nr, void *addr) { __atomic_fetch_or((unsigned long *)addr + nr / 64, 1UL << (nr % 64), __ATOMIC_RELAXED); }
static inline void clear_bit(long nr, unsigned long *addr) { __atomic_fetch_and(addr + nr / 64, ~(1UL << (nr % 64)), __ATOMIC_RELAXED); }
static inline bool test_and_clear_bit(long nr, unsigned long *addr) {
  return (__atomic_fetch_and(addr + nr / 64, ~(1UL << (nr % 64)), __ATOMIC_RELAXED) >> (nr % 64)) & 1;
}

#define PAGE_SHIFT 12
#define PAGE_SIZE (1UL << PAGE_SHIFT)
#define PAGE_MASK (~(PAGE_SIZE - 1))
#define GFP_KERNEL 0x1u
#define GFP_KERNEL_ACCOUNT 0x3u
#define GFP_NOWAIT 0x4u
#define __GFP_ZERO 0x100u
#define __GFP_ACCOUNT 0x2u
#define __GFP_NOWARN 0x200u

/* WARN, BUG and KVM_BUG_ON are reported to mirrormmu's site tracker with
 * the file and line of the tree, and then behave as in the kernel: WARN
 * goes on, BUG stops the operation (the harness turns it into a failure). */
void kshim_warn(const char *cond, const char *file, int line, int once);
void kshim_bug(const char *cond, const char *file, int line) __attribute__((noreturn));
#define WARN_ON(c) ({ bool __c = !!(c); if (unlikely(__c)) kshim_warn(#c, __FILE__, __LINE__, 0); unlikely(__c); })
#define WARN_ON_ONCE(c) ({ bool __c = !!(c); if (unlikely(__c)) kshim_warn(#c, __FILE__, __LINE__, 1); unlikely(__c); })
#define WARN_ONCE(c, ...) WARN_ON_ONCE(c)
#define WARN(c, ...) WARN_ON(c)
#define BUG_ON(c) do { if (unlikely(c)) kshim_bug(#c, __FILE__, __LINE__); } while (0)
#define BUG() kshim_bug("BUG()", __FILE__, __LINE__)

#include "kshim/list.h"
#include "kshim/atomic.h"
#include "kshim/bridge.h"

#endif
