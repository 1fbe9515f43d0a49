/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The slice of struct kvm, kvm_vcpu and the memslot API the TDP MMU reads.
 * Ours, not the tree's: only the fields the MMU uses, so the real code's
 * accesses compile and land in state the oracle glue (oracle/kmmu.c) keeps.
 * Declarations whose layout is the tree's (role union, memory cache, page
 * levels, EPT bits) come from generated/tree_decls.h.
 */
#ifndef KSHIM_LINUX_KVM_HOST_H
#define KSHIM_LINUX_KVM_HOST_H

#include "kshim/kernel.h"
#include "generated/tree_decls.h"
#include "generated/x86_ops.h"

#define KVM_ADDRESS_SPACE_NUM 2
#define KVM_MEM_LOG_DIRTY_PAGES (1UL << 0)
#define KVM_MEMSLOT_INVALID (1UL << 16)
#define KVM_MEM_READONLY (1UL << 1)
#define KVM_MEM_GUEST_MEMFD (1UL << 2)
#define KVM_PFN_ERR_FAULT ((kvm_pfn_t)-1)
#define KVM_HVA_ERR_BAD (~0UL)
#define INVALID_PAGE (~(hpa_t)0)
#define VALID_PAGE(x) ((x) != INVALID_PAGE)
#define KVM_MMU_NUM_PREV_ROOTS 3

struct kvm;
struct kvm_vcpu;

struct kvm_lpage_info { int disallow_lpage; };
struct kvm_arch_memory_slot {
  struct kvm_rmap_head *rmap[KVM_NR_PAGE_SIZES];
  struct kvm_lpage_info *lpage_info[KVM_NR_PAGE_SIZES - 1];
};
struct kvm_memory_slot {
  gfn_t base_gfn;
  unsigned long npages;
  unsigned long *dirty_bitmap;
  struct kvm_arch_memory_slot arch;
  unsigned long userspace_addr;
  u32 flags;
  short id;
  u16 as_id;
};
static inline bool kvm_slot_dirty_track_enabled(const struct kvm_memory_slot *s) {
  return s->flags & KVM_MEM_LOG_DIRTY_PAGES;
}

union kvm_mmu_notifier_arg { unsigned long attributes; };
struct kvm_gfn_range {
  struct kvm_memory_slot *slot;
  gfn_t start;
  gfn_t end;
  union kvm_mmu_notifier_arg arg;
  bool may_block;
};

struct kvm_memslots { u64 generation; };
struct kvm_memslots *kvm_vcpu_memslots(struct kvm_vcpu *vcpu);

/* What spte.c's init reads of the host CPU: a 52-bit physical address space
 * with no memory encryption bits stolen. */
struct cpuinfo_x86 { int x86_phys_bits; int x86_cache_bits; unsigned int extended_cpuid_level; };
extern struct cpuinfo_x86 boot_cpu_data;
struct kvm_host_values { u8 maxphyaddr; u64 efer; };
extern struct kvm_host_values kvm_host;
#define X86_BUG_L1TF 0
#define boot_cpu_has_bug(b) false
static inline u32 cpuid_eax(u32 op) { (void)op; return 0; }
#define pfn_to_hpa(pfn) ((hpa_t)(pfn) << PAGE_SHIFT)

struct kvm_mmu_root_info { gpa_t pgd; hpa_t hpa; };
struct rsvd_bits_validate { u64 rsvd_bits_mask[2][PG_LEVEL_NUM - 1]; u64 bad_mt_xwr; };
struct kvm_page_fault;
struct kvm_mmu {
  int (*page_fault)(struct kvm_vcpu *vcpu, struct kvm_page_fault *fault);
  struct kvm_mmu_root_info root;
  union kvm_mmu_page_role root_role;
  struct rsvd_bits_validate shadow_zero_check;
};

struct kvm_arch {
  u64 shadow_mmio_value;
  bool disable_nx_huge_pages;
  bool shadow_root_allocated;
  struct list_head tdp_mmu_roots;
  spinlock_t tdp_mmu_pages_lock;
  atomic64_t tdp_mmu_pages;
  struct list_head possible_nx_huge_pages;
};
struct kvm_vm_stat { atomic64_t pages[KVM_NR_PAGE_SIZES]; u64 nx_lpage_splits; };
struct kvm {
  rwlock_t mmu_lock;
  struct kvm_vm_stat stat;
  struct mutex slots_lock;
  refcount_t users_count;
  int created_vcpus;
  struct kvm_arch arch;
  void *oracle;   /* the glue's per-VM state */
};

struct kvm_vcpu_arch {
  struct kvm_mmu *mmu;
  struct kvm_mmu root_mmu;
  struct kvm_mmu_memory_cache mmu_pte_list_desc_cache;
  struct kvm_mmu_memory_cache mmu_shadow_page_cache;
  struct kvm_mmu_memory_cache mmu_shadowed_info_cache;
  struct kvm_mmu_memory_cache mmu_page_header_cache;
};
struct kvm_vcpu_stat { u64 pf_mmio_spte_created; u64 pf_fixed; u64 pf_spurious; };
struct kvm_vcpu {
  struct kvm *kvm;
  int vcpu_id;
  struct kvm_vcpu_arch arch;
  struct kvm_vcpu_stat stat;
};

/* kvm_x86_ops as the tree lists it (generated/x86_ops.h): every member an
 * untyped pointer, called through kvm_x86_call() with the tree's arguments.
 * Data members the MMU reads are listed after the ops. */
struct kvm_x86_ops {
#define KSHIM_OP(name) u64 (*name)();
  MIRRORMMU_X86_OPS(KSHIM_OP, KSHIM_OP, KSHIM_OP)
#undef KSHIM_OP
  int cpu_dirty_log_size;
};
extern struct kvm_x86_ops kvm_x86_ops;
#define kvm_x86_call(op) (*kvm_x86_ops.op)

/* Implemented by the glue (oracle/kmmu.c): what kvm_main.c and x86.c do. */
static inline void kvm_update_page_stats(struct kvm *kvm, int level, int count) {
  atomic64_add(count, &kvm->stat.pages[level - 1]);
}
/* Secondary page-table memory: counted by the glue, checked against zero
 * when the VM goes away. */
void kvm_account_pgtable_pages(void *virt, int nr);
void kvm_flush_remote_tlbs(struct kvm *kvm);
void kvm_flush_remote_tlbs_range(struct kvm *kvm, gfn_t gfn, u64 nr_pages);
void mark_page_dirty_in_slot(struct kvm *kvm, const struct kvm_memory_slot *slot, gfn_t gfn);
void kvm_set_pfn_dirty(kvm_pfn_t pfn);
void kvm_set_pfn_accessed(kvm_pfn_t pfn);
void *kvm_mmu_memory_cache_alloc(struct kvm_mmu_memory_cache *mc);
struct kvm_memory_slot *kvm_vcpu_gfn_to_memslot(struct kvm_vcpu *vcpu, gfn_t gfn);
void kvm_prepare_memory_fault_exit(struct kvm_vcpu *vcpu, gpa_t gpa, gpa_t size, bool is_write,
                                   bool is_exec, bool is_private);
void kshim_kvm_bug(struct kvm *kvm, const char *cond, const char *file, int line);
#define KVM_BUG_ON(c, kvm) ({ bool __c = !!(c); if (unlikely(__c)) kshim_kvm_bug(kvm, #c, __FILE__, __LINE__); unlikely(__c); })
#define KVM_BUG(c, kvm, ...) KVM_BUG_ON(c, kvm)


#define for_each_set_bit(bit, addr, size) \
  for ((bit) = 0; (bit) < (size); (bit)++) if (test_bit(bit, (const unsigned long *)(addr)))

#endif
