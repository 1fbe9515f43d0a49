// SPDX-License-Identifier: MIT
// Dynamic PAMT (ModuleConfig::dynamic_pamt): TDH.PHYMEM.PAMT.ADD,
// TDH.PHYMEM.PAMT.REMOVE, and the checks the other calls make before they
// give a frame a 4K PAMT entry.
//
// With DPAMT the module keeps static 1G and 2M PAMT levels but no 4K level of
// its own. Before any frame in a 2M region of host memory can become a 4K TD
// page (private page, S-EPT page, control page), the host must lend the module
// a "page pair": two pages that hold the region's 512 4K entries. Frames used
// at 2M or 1G have no 4K entry and need no pair. The module tracks the pair
// pages in a bitmap, not in 4K entries, so they need no pair of their own and
// do not keep their own region busy. The model records them as
// PamtType::Pamt and leaves them out of PAMT.REMOVE's emptiness check.
//
// The calls that need a pair take their page's region lock (shared) *before*
// their own checks on that page and check the pair *after* them. Taking
// every lock first keeps a contention window from opening between a check
// and the commit, so a concurrent PAMT.REMOVE cannot pull the pair from under
// a call that has already checked it. MISSING_PAMT_PAGE_PAIR is still the
// last error the call can return.
//
// Statuses follow the fact sheet (§6): PAMT.ADD refuses a region that already
// has a pair, or that is (part of) a 2M/1G page, with HPA_RANGE_NOT_FREE|RCX,
// and a page that is not free with PAGE_NOT_FREE|RDX/R8. PAMT.REMOVE returns
// NO_PAMT_PAGE_PAIR|RCX when there is nothing to remove, and
// PAMT_PAGE_NOT_EMPTY when a 4K entry is in use, with the detail naming which
// pair page holds that entry (0 or 1).
#include "tdx/module_impl.h"

namespace mirrormmu::tdx {

namespace {
// A 4K PAMT entry is 16 bytes, so each page of a pair holds 256 of the 512.
constexpr uint64_t kEntriesPerPairPage = kPageSize / 16;
}  // namespace

// ---- locks and checks -------------------------------------------------------------

Status TdxModule::Impl::LockSet::pamt_region(Pfn frame, LockMode mode, Operand busy_operand) {
  if (!impl_.dpamt() || !impl_.pamt.in_range(frame)) return TDX_SUCCESS;
  const uint64_t region = Pamt::region_of(frame);
  // A call whose two frames share a region (they cannot both be valid then,
  // and its checks will say so) must not report BUSY against itself.
  for (size_t i = 0; i < nregions_; ++i) {
    if (regions_[i].region == region) return TDX_SUCCESS;
  }
  SharexLock& lock = impl_.pamt_region_locks[region];
  if (!lock.try_lock(mode)) return with_operand(TDX_OPERAND_BUSY, busy_operand);
  regions_.at(nregions_++) = RegionHold{region, mode};
  window(&lock);
  return TDX_SUCCESS;
}

Status TdxModule::Impl::require_pamt_pair(Pfn page, Operand op) const {
  if (!dpamt() || pamt.has_pair(page)) return TDX_SUCCESS;
  return with_operand(TDX_MISSING_PAMT_PAGE_PAIR, op);
}

Status TdxModule::Impl::check_pamt_region(Pfn region_base) const {
  const uint64_t n = Pamt::frames(1);
  if (!region_base.valid() || (region_base.v & (n - 1)) != 0) {
    return with_operand(TDX_OPERAND_INVALID, Operand::RCX);
  }
  if (!pamt.range_in(region_base, n)) return with_operand(TDX_OPERAND_ADDR_RANGE_ERROR, Operand::RCX);
  return TDX_SUCCESS;
}

Status TdxModule::Impl::check_pair_page(Pfn page, Operand op) const {
  if (!page.valid()) return with_operand(TDX_OPERAND_INVALID, op);
  if (!pamt.in_range(page)) return with_operand(TDX_OPERAND_ADDR_RANGE_ERROR, op);
  if (pamt.type(page) != PamtType::Nda) return with_operand(TDX_PAGE_NOT_FREE, op);
  return TDX_SUCCESS;
}

// The split turns the range's one 2M entry into 512 4K entries, which need
// somewhere to live. Supplied pages are ignored when the range already has a
// pair (e.g. left behind by a PROMOTE): they stay the host's.
Status TdxModule::Impl::demote_pamt_pair(Pfn range, Pfn new_sept_page, Pfn page0, Pfn page1,
                                         bool& install) const {
  install = false;
  if (!dpamt() || pamt.has_pair(range)) return TDX_SUCCESS;
  if (!page0.valid() && !page1.valid()) return with_operand(TDX_MISSING_PAMT_PAGE_PAIR, Operand::RCX);
  if (Status s = check_pair_page(page0, Operand::R12)) return s;
  if (Status s = check_pair_page(page1, Operand::R13)) return s;
  // Both are still NDA here, so only their identity tells a page used twice.
  if (page0 == new_sept_page) return with_operand(TDX_OPERAND_INVALID, Operand::R12);
  if (page1 == page0 || page1 == new_sept_page) return with_operand(TDX_OPERAND_INVALID, Operand::R13);
  install = true;
  return TDX_SUCCESS;
}

// ---- call bodies ------------------------------------------------------------------

Status TdxModule::Impl::pamt_add(Pfn region_base, Pfn page0, Pfn page1) {
  // A module without DPAMT does not know the leaf.
  if (!dpamt()) return with_operand(TDX_OPERAND_INVALID, Operand::RAX);
  if (Status s = injected(Operand::RCX)) return s;
  if (Status s = check_pamt_region(region_base)) return s;
  LockSet locks(*this);
  if (Status s = locks.pamt_region(region_base, LockMode::Exclusive, Operand::RCX)) return s;
  // A region used as (part of) a 2M or 1G page has no 4K entries to hold.
  const bool large_page = pamt.size_level(region_base) > 0 && pamt.type(region_base) != PamtType::Nda;
  if (pamt.has_pair(region_base) || large_page) return with_operand(TDX_HPA_RANGE_NOT_FREE, Operand::RCX);
  if (Status s = check_pair_page(page0, Operand::RDX)) return s;
  if (Status s = check_pair_page(page1, Operand::R8)) return s;
  if (page1 == page0) return with_operand(TDX_OPERAND_INVALID, Operand::R8);

  pamt.install_pair(region_base, page0, page1);
  return TDX_SUCCESS;
}

Ret TdxModule::Impl::pamt_remove(Pfn region_base, Pfn* page0_out, Pfn* page1_out) {
  if (!dpamt()) return {with_operand(TDX_OPERAND_INVALID, Operand::RAX)};
  if (Status s = injected(Operand::RCX)) return {s};
  if (Status s = check_pamt_region(region_base)) return {s};
  LockSet locks(*this);
  if (Status s = locks.pamt_region(region_base, LockMode::Exclusive, Operand::RCX)) return {s};
  const std::optional<Pamt::PagePair> pair = pamt.pair(region_base);
  if (!pair) return {with_operand(TDX_NO_PAMT_PAGE_PAIR, Operand::RCX)};
  if (const std::optional<uint64_t> used = pamt.first_4k_in_use(region_base)) {
    return {TDX_PAMT_PAGE_NOT_EMPTY | (*used / kEntriesPerPairPage)};
  }

  pamt.remove_pair(region_base);
  if (page0_out != nullptr) *page0_out = pair->page0;
  if (page1_out != nullptr) *page1_out = pair->page1;
  return {};
}

// ---- public entry points and introspection ------------------------------------------

Status TdxModule::tdh_phymem_pamt_add(Pfn region_base_2m, Pfn page0, Pfn page1) {
  return impl_->call(Leaf::PHYMEM_PAMT_ADD, 0, 0,
                     [&] { return impl_->pamt_add(region_base_2m, page0, page1); });
}

Ret TdxModule::tdh_phymem_pamt_remove(Pfn region_base_2m, Pfn* page0_out, Pfn* page1_out) {
  return impl_->call(Leaf::PHYMEM_PAMT_REMOVE, 0, 0,
                     [&] { return impl_->pamt_remove(region_base_2m, page0_out, page1_out); });
}

bool TdxModule::pamt_pair_present(Pfn frame) const {
  std::shared_lock lock(impl_->mu);
  return impl_->pamt.has_pair(frame);
}

uint64_t TdxModule::pamt_pairs() const {
  std::shared_lock lock(impl_->mu);
  return impl_->pamt.pairs();
}

}  // namespace mirrormmu::tdx
