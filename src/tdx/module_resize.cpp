// SPDX-License-Identifier: MIT
// Changing the size of a private mapping: TDH.MEM.PAGE.DEMOTE (2M -> 512 x
// 4K, 1G -> 512 x 2M, with a new S-EPT page) and TDH.MEM.PAGE.PROMOTE (the
// reverse, freeing the S-EPT page). KVM only ever demotes; promotion is
// modelled so a design that tries it meets the module's real rules.
//
// Dynamic PAMT: the new S-EPT page needs a page pair in its own region, and a
// 2M -> 4K split needs one for the range it splits (present, or supplied in
// R12/R13 and installed by the commit). DEMOTE holds that range's PAMT region
// exclusively: it rewrites the region's 4K entries. PROMOTE keeps the pair;
// the host takes it back with PAMT.REMOVE.
#include "tdx/module_impl.h"

namespace mirrormmu::tdx {

namespace {

constexpr Status kStateIncorrect = with_operand(TDX_EPT_ENTRY_STATE_INCORRECT, Operand::RCX);
// Both operate on the 2M or 1G entry; op-states as BLOCK. DEMOTE takes the
// tree lock shared and locks the large entry. PROMOTE in 1.5.28 takes the
// tree lock exclusively instead of locking the 512 children (older modules:
// shared, plus every child entry).
constexpr MemCall kDemoteCall{kBuildOrRun, 1, 2, LockMode::Shared};
constexpr MemCall kPromoteCall{kBuildOrRun, 1, 2, LockMode::Exclusive};

SeptState unblocked(SeptState s) {
  if (s == SeptState::Blocked) return SeptState::Mapped;
  if (s == SeptState::PendingBlocked) return SeptState::Pending;
  return s;
}

}  // namespace

Ret TdxModule::Impl::page_demote(uint64_t gpa, int level, Pfn new_sept_page, Pfn pamt_page0, Pfn pamt_page1) {
  if (Status s = injected(Operand::SEPT_TREE)) return {s};
  LockSet locks(*this);
  SeptWalk w;
  if (Ret r = mem_prologue(locks, kDemoteCall, gpa, level, w); !r.ok()) return r;
  const SeptState s = w.state();
  if (!is_leaf_state(s)) return ext(kStateIncorrect, w);
  if (Ret r = require_blocked_and_tracked(w); !r.ok()) return r;
  const Pfn base = w.pfn();
  const bool split_to_4k = level == 1;
  // Both PAMT region locks before any check on the pages they cover.
  if (Status st = locks.pamt_region(new_sept_page, LockMode::Shared, Operand::R8)) return {st};
  if (split_to_4k) {
    if (Status st = locks.pamt_region(base, LockMode::Exclusive, Operand::RCX)) return {st};
  }
  if (Status st = check_new_page(new_sept_page, 0, Operand::R8)) return {st};
  if (Status st = require_pamt_pair(new_sept_page, Operand::R8)) return {st};
  bool install_pair = false;
  if (split_to_4k) {
    if (Status st = demote_pamt_pair(base, new_sept_page, pamt_page0, pamt_page1, install_pair)) return {st};
  }

  // Before the PAMT split, nothing committed yet: the host simply restarts.
  // No forward progress is promised, which is why KVM enables huge pages only
  // on modules that enumerate the feature.
  if (!m.cfg_.enhanced_demote_interruptibility && host_interrupt_pending()) return {TDX_INTERRUPTED_RESTARTABLE};

  if (install_pair) pamt.install_pair(base, pamt_page0, pamt_page1);
  // 512 children of the next size in the unblocked form of the old state,
  // with contiguous frames: nothing is left blocked, no UNBLOCK is needed.
  SeptTable& t = tree.add_table(new_sept_page, level - 1);
  for (int i = 0; i < kSptePerPage; i++)
    t.e[static_cast<size_t>(i)] = sept::make_entry(unblocked(s), base + uint64_t(i) * Pamt::frames(level - 1));
  pamt.clear_bepoch(base);
  for (int i = 0; i < kSptePerPage; i++) pamt.set(base + uint64_t(i) * Pamt::frames(level - 1), level - 1, PamtType::Reg);
  pamt.set(new_sept_page, 0, PamtType::Ept);
  m.chldcnt_.fetch_add(1, std::memory_order_relaxed);
  w.set(sept::make_entry(SeptState::NlMapped, new_sept_page));
  return {};
}

Ret TdxModule::Impl::page_promote(uint64_t gpa, int level) {
  if (Status s = injected(Operand::SEPT_TREE)) return {s};
  LockSet locks(*this);
  SeptWalk w;
  if (Ret r = mem_prologue(locks, kPromoteCall, gpa, level, w); !r.ok()) return r;
  const SeptState s = w.state();
  if (!is_nonleaf_state(s)) return ext(kStateIncorrect, w);
  if (Ret r = require_blocked_and_tracked(w); !r.ok()) return r;
  const Pfn table_pfn = w.pfn();
  const SeptTable* t = tree.find(table_pfn);
  const Status bad = with_operand(TDX_EPT_INVALID_PROMOTE_CONDITIONS, Operand::RCX);
  if (!t) return ext(bad, w);
  // 512 leaves, all MAPPED or all PENDING (none blocked), the first one
  // aligned to the merged size and the rest following it frame by frame.
  const SeptState first = sept::state_of(t->e[0]);
  const Pfn base = sept::pfn_of(t->e[0]);
  if ((first != SeptState::Mapped && first != SeptState::Pending) || !base.valid() ||
      (base.v & (Pamt::frames(level) - 1)) != 0)
    return ext(bad, w);
  for (int i = 0; i < kSptePerPage; i++) {
    const sept::Word e = t->e[static_cast<size_t>(i)];
    if ((e & sept::kLockBit) != 0) return ext(with_operand(TDX_OPERAND_BUSY, Operand::RCX), w);
    if (sept::state_of(e) != first || sept::pfn_of(e) != base + uint64_t(i) * Pamt::frames(level - 1))
      return ext(bad, w);
  }

  if (host_interrupt_pending()) return {TDX_INTERRUPTED_RESTARTABLE};

  tree.remove_table(table_pfn);
  pamt.clear(table_pfn, 0);
  pamt.clear_bepoch(table_pfn);
  pamt.set(base, level, PamtType::Reg);
  m.chldcnt_.fetch_sub(1, std::memory_order_relaxed);
  w.set(sept::make_entry(first, base));
  return {};
}

Ret TdxModule::tdh_mem_page_demote(uint64_t gpa, int tdx_level, Pfn new_sept_page, Pfn pamt_page0,
                                   Pfn pamt_page1) {
  return impl_->call(Leaf::MEM_PAGE_DEMOTE, gpa, tdx_level, [&] {
    return impl_->page_demote(gpa, tdx_level, new_sept_page, pamt_page0, pamt_page1);
  });
}

Ret TdxModule::tdh_mem_page_promote(uint64_t gpa, int tdx_level) {
  return impl_->call(Leaf::MEM_PAGE_PROMOTE, gpa, tdx_level, [&] { return impl_->page_promote(gpa, tdx_level); });
}

}  // namespace mirrormmu::tdx
