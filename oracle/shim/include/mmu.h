/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * arch/x86/kvm/mmu.h as the TDP MMU sees it: the page-table bit definitions
 * and rsvd_bits() come from the tree (generated/tree_decls.h); the rest are
 * the few mmu.c declarations tdp_mmu.c and spte.c call, implemented by the
 * glue in oracle/kmmu.c.
 */
#ifndef KSHIM_MMU_H
#define KSHIM_MMU_H

#include <linux/kvm_host.h>

extern bool enable_mmio_caching;
extern bool tdp_enabled;
extern bool tdp_mmu_enabled;
extern int nx_huge_pages;

static inline gfn_t kvm_mmu_max_gfn(void) { return (1ULL << (52 - PAGE_SHIFT)) - 1; }
u8 kvm_mmu_get_max_tdp_level(void);
void kvm_mmu_set_mmio_spte_mask(u64 mmio_value, u64 mmio_mask, u64 access_mask);
void kvm_mmu_set_me_spte_mask(u64 me_value, u64 me_mask);
void kvm_mmu_set_ept_masks(bool has_ad_bits, bool has_exec_only);
void kvm_mmu_reset_all_pte_masks(void);

#endif
