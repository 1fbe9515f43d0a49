// SPDX-License-Identifier: MIT
// S-EPT management SEAMCALLs: SEPT.ADD, PAGE.ADD, PAGE.AUG, RANGE.BLOCK,
// RANGE.UNBLOCK, PAGE.REMOVE, SEPT.REMOVE, SEPT.RD.
//
// Each body follows the module's order: injected fault, prologue (TDR,
// lifecycle, op-state, page-info, tree lock, walk, entry lock), state gate,
// call-specific checks, then the commit. Nothing is written before the
// commit, which is what makes "a failed call changes nothing" hold. With
// Dynamic PAMT, a call that gives a frame a 4K entry locks the frame's 2M
// PAMT region before checking the frame and requires the region's page pair
// last (module_pamt.cpp).
#include "tdx/module_impl.h"

namespace mirrormmu::tdx {

namespace {

constexpr Status kStateIncorrect = with_operand(TDX_EPT_ENTRY_STATE_INCORRECT, Operand::RCX);

constexpr MemCall kSeptAddCall{kBuildOrRun, 1, kRootLevel, LockMode::Shared};
// PAGE.ADD holds the TDR exclusively, which already excludes every other
// S-EPT call on the TD, so it takes no tree lock.
constexpr MemCall kPageAddCall{{OpState::Initialized}, 0, 0, std::nullopt, LockMode::Exclusive};
constexpr MemCall kPageAugCall{kBuildOrRun, 0, 1, LockMode::Shared};
constexpr MemCall kBlockCall{kBuildOrRun, 0, kRootLevel, LockMode::Exclusive};
constexpr MemCall kUnblockCall{kBuildOrRun, 0, kRootLevel, LockMode::Exclusive};
constexpr MemCall kPageRemoveCall{kBuildOrRun, 0, 2, LockMode::Shared};
constexpr MemCall kSeptRemoveCall{kBuildOrRun, 1, kRootLevel, LockMode::Exclusive};
constexpr MemCall kSeptRdCall{kBuildOrRun, 0, kRootLevel, LockMode::Shared};

SeptState blocked_form(SeptState s) {
  switch (s) {
    case SeptState::NlMapped: return SeptState::NlBlocked;
    case SeptState::Mapped: return SeptState::Blocked;
    case SeptState::Pending: return SeptState::PendingBlocked;
    default: return s;
  }
}

SeptState unblocked_form(SeptState s) {
  switch (s) {
    case SeptState::NlBlocked: return SeptState::NlMapped;
    case SeptState::Blocked: return SeptState::Mapped;
    case SeptState::PendingBlocked: return SeptState::Pending;
    default: return s;
  }
}

}  // namespace

Ret TdxModule::Impl::sept_add(uint64_t gpa, int level, Pfn page) {
  if (Status s = injected(Operand::SEPT_TREE)) return {s};
  LockSet locks(*this);
  SeptWalk w;
  if (Ret r = mem_prologue(locks, kSeptAddCall, gpa, level, w); !r.ok()) return r;
  // NL_MAPPED is refused too: the model implements v0, without ALLOW_EXISTING.
  if (w.state() != SeptState::Free) return ext(kStateIncorrect, w);
  if (Status s = locks.pamt_region(page, LockMode::Shared, Operand::R8)) return {s};
  if (Status s = check_new_page(page, 0, Operand::R8)) return {s};
  if (Status s = require_pamt_pair(page, Operand::R8)) return {s};

  tree.add_table(page, level - 1);
  pamt.set(page, 0, PamtType::Ept);
  m.chldcnt_.fetch_add(1, std::memory_order_relaxed);
  w.set(sept::make_entry(SeptState::NlMapped, page));
  return {};
}

Ret TdxModule::Impl::page_add(uint64_t gpa, int level, Pfn hpa, Pfn source) {
  if (Status s = injected(Operand::SEPT_TREE)) return {s};
  LockSet locks(*this);
  SeptWalk w;
  if (Ret r = mem_prologue(locks, kPageAddCall, gpa, level, w); !r.ok()) return r;
  if (w.state() != SeptState::Free) return ext(kStateIncorrect, w);
  if (Status s = locks.pamt_region(hpa, LockMode::Shared, Operand::R8)) return {s};
  // The source is ordinary host memory: anything the module owns is not.
  if (!pamt.in_range(source) || pamt.type(source) != PamtType::Nda) {
    return {with_operand(TDX_OPERAND_INVALID, Operand::R9)};
  }
  if (Status s = check_new_page(hpa, 0, Operand::R8)) return {s};
  if (Status s = require_pamt_pair(hpa, Operand::R8)) return {s};

  // MOVDIR64B of the image under the TD's key dirties the cache.
  pamt.set(hpa, 0, PamtType::Reg, /*dirties_cache=*/true);
  m.chldcnt_.fetch_add(1, std::memory_order_relaxed);
  ++mrtd_pages;
  w.set(sept::make_entry(SeptState::Mapped, hpa));
  return {};
}

Ret TdxModule::Impl::page_aug(uint64_t gpa, int level, Pfn hpa) {
  if (Status s = injected(Operand::SEPT_TREE)) return {s};
  LockSet locks(*this);
  SeptWalk w;
  if (Ret r = mem_prologue(locks, kPageAugCall, gpa, level, w); !r.ok()) return r;
  if (w.state() != SeptState::Free) return ext(kStateIncorrect, w);
  // Only a 4K page has a 4K PAMT entry; a 2M page needs no pair.
  const bool entry_4k = level == 0;
  if (entry_4k) {
    if (Status s = locks.pamt_region(hpa, LockMode::Shared, Operand::R8)) return {s};
  }
  if (Status s = check_new_page(hpa, level, Operand::R8)) return {s};
  if (entry_4k) {
    if (Status s = require_pamt_pair(hpa, Operand::R8)) return {s};
  }

  // The guest's ACCEPT clears it under the TD's key: its cache lines are
  // the TD's from here.
  pamt.set(hpa, level, PamtType::Reg, /*dirties_cache=*/true);
  m.chldcnt_.fetch_add(static_cast<int64_t>(Pamt::frames(level)), std::memory_order_relaxed);
  w.set(sept::make_entry(SeptState::Pending, hpa));
  return {};
}

Ret TdxModule::Impl::range_block(uint64_t gpa, int level) {
  if (Status s = injected(Operand::SEPT_TREE)) return {s};
  LockSet locks(*this);
  SeptWalk w;
  if (Ret r = mem_prologue(locks, kBlockCall, gpa, level, w); !r.ok()) return r;
  const SeptState s = w.state();
  if (is_blocked_state(s)) return ext(with_operand(TDX_GPA_RANGE_ALREADY_BLOCKED, Operand::RCX), w);
  if (s != SeptState::NlMapped && s != SeptState::Mapped && s != SeptState::Pending) {
    return ext(kStateIncorrect, w);
  }

  w.set(sept::with_state(w.value(), blocked_form(s)));
  // BEPOCH goes on the blocked object: the mapped page for a leaf, the child
  // S-EPT page for a non-leaf; both are the entry's frame.
  pamt.set_bepoch(w.pfn(), m.td_epoch_);
  return {};
}

Ret TdxModule::Impl::range_unblock(uint64_t gpa, int level) {
  if (Status s = injected(Operand::SEPT_TREE)) return {s};
  LockSet locks(*this);
  SeptWalk w;
  if (Ret r = mem_prologue(locks, kUnblockCall, gpa, level, w); !r.ok()) return r;
  const SeptState s = w.state();
  if (!is_blocked_state(s)) return ext(kStateIncorrect, w);
  if (tracking_required() && !tracked(w.pfn())) {
    return ext(with_operand(TDX_TLB_TRACKING_NOT_DONE, Operand::SEPT_TREE), w);
  }

  pamt.clear_bepoch(w.pfn());
  w.set(sept::with_state(w.value(), unblocked_form(s)));
  return {};
}

Ret TdxModule::Impl::page_remove(uint64_t gpa, int level) {
  if (Status s = injected(Operand::SEPT_TREE)) return {s};
  LockSet locks(*this);
  SeptWalk w;
  if (Ret r = mem_prologue(locks, kPageRemoveCall, gpa, level, w); !r.ok()) return r;
  const SeptState s = w.state();
  if (!is_leaf_state(s)) return ext(kStateIncorrect, w);
  if (Ret r = require_blocked_and_tracked(w); !r.ok()) return r;

  // The page is not flushed: the host must TDH.PHYMEM.PAGE.WBINVD it.
  tlb_check_gone(gpa, w.pfn(), Pamt::frames(w.level), "TDH.MEM.PAGE.REMOVE");
  pamt.clear(w.pfn(), w.level);
  m.chldcnt_.fetch_sub(static_cast<int64_t>(Pamt::frames(w.level)), std::memory_order_relaxed);
  w.set(0);
  return {};
}

Ret TdxModule::Impl::sept_remove(uint64_t gpa, int level) {
  if (Status s = injected(Operand::SEPT_TREE)) return {s};
  LockSet locks(*this);
  SeptWalk w;
  if (Ret r = mem_prologue(locks, kSeptRemoveCall, gpa, level, w); !r.ok()) return r;
  const SeptState s = w.state();
  if (!is_nonleaf_state(s)) return ext(kStateIncorrect, w);
  if (Ret r = require_blocked_and_tracked(w); !r.ok()) return r;
  const Pfn child = w.pfn();
  if (const SeptTable* t = tree.find(child)) {
    for (const sept::Word e : t->e) {
      if (sept::state_of(e) != SeptState::Free) {
        return ext(with_operand(TDX_EPT_PAGE_NOT_FREE, Operand::RCX), w);
      }
    }
  }

  tree.remove_table(child);
  pamt.clear(child, 0);
  m.chldcnt_.fetch_sub(1, std::memory_order_relaxed);
  w.set(0);
  return {};
}

Ret TdxModule::Impl::sept_rd(uint64_t gpa, int level) {
  LockSet locks(*this);
  SeptWalk w;
  if (Ret r = mem_prologue(locks, kSeptRdCall, gpa, level, w); !r.ok()) return r;
  return ext(TDX_SUCCESS, w);
}

// ---- public entry points ----------------------------------------------------------

Ret TdxModule::tdh_mem_sept_add(uint64_t gpa, int tdx_level, Pfn new_sept_page) {
  return impl_->call(Leaf::MEM_SEPT_ADD, gpa, tdx_level,
                     [&] { return impl_->sept_add(gpa, tdx_level, new_sept_page); });
}

Ret TdxModule::tdh_mem_page_add(uint64_t gpa, int tdx_level, Pfn hpa, Pfn source) {
  return impl_->call(Leaf::MEM_PAGE_ADD, gpa, tdx_level,
                     [&] { return impl_->page_add(gpa, tdx_level, hpa, source); });
}

Ret TdxModule::tdh_mem_page_aug(uint64_t gpa, int tdx_level, Pfn hpa) {
  return impl_->call(Leaf::MEM_PAGE_AUG, gpa, tdx_level, [&] { return impl_->page_aug(gpa, tdx_level, hpa); });
}

Ret TdxModule::tdh_mem_range_block(uint64_t gpa, int tdx_level) {
  return impl_->call(Leaf::MEM_RANGE_BLOCK, gpa, tdx_level, [&] { return impl_->range_block(gpa, tdx_level); });
}

Ret TdxModule::tdh_mem_range_unblock(uint64_t gpa, int tdx_level) {
  return impl_->call(Leaf::MEM_RANGE_UNBLOCK, gpa, tdx_level,
                     [&] { return impl_->range_unblock(gpa, tdx_level); });
}

Ret TdxModule::tdh_mem_page_remove(uint64_t gpa, int tdx_level) {
  return impl_->call(Leaf::MEM_PAGE_REMOVE, gpa, tdx_level, [&] { return impl_->page_remove(gpa, tdx_level); });
}

Ret TdxModule::tdh_mem_sept_remove(uint64_t gpa, int tdx_level) {
  return impl_->call(Leaf::MEM_SEPT_REMOVE, gpa, tdx_level, [&] { return impl_->sept_remove(gpa, tdx_level); });
}

Ret TdxModule::tdh_mem_sept_rd(uint64_t gpa, int tdx_level) {
  return impl_->call(Leaf::MEM_SEPT_RD, gpa, tdx_level, [&] { return impl_->sept_rd(gpa, tdx_level); });
}

}  // namespace mirrormmu::tdx
