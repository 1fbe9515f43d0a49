// SPDX-License-Identifier: MIT
// What each host SEAMCALL leaf can return besides success, as the 1.5
// module's sources check it (the TD prologue, PAGEINFO, the tree and entry
// locks, the walk, the state, the new pages, tracking), so an injected
// failure is always one the real leaf could give. The operand id each
// status carries most often goes with it.
#include <string>

#include <algorithm>
#include <array>

#include "tdx/status.h"

namespace mirrormmu::tdx {

namespace {

using Op = Operand;

// TDR prologue of a leaf with the TDR in RDX (TDH.MEM.*).
#define TDP_RDX                                                                                           \
  {TDX_OPERAND_INVALID, Op::RDX}, {TDX_OPERAND_ADDR_RANGE_ERROR, Op::RDX}, {TDX_OPERAND_BUSY, Op::RDX},   \
      {TDX_PAGE_METADATA_INCORRECT, Op::RDX}, {TDX_TD_FATAL, Op::RAX}, {TDX_TD_KEYS_NOT_CONFIGURED, Op::RAX}, \
      {TDX_TDCS_NOT_ALLOCATED, Op::RAX}, {TDX_OPERAND_BUSY, Op::OP_STATE}, {TDX_OP_STATE_INCORRECT, Op::RAX}
// Checks of a new page the host hands over in R8.
#define PAGE_R8                                                                                           \
  {TDX_OPERAND_INVALID, Op::R8}, {TDX_OPERAND_ADDR_RANGE_ERROR, Op::R8}, {TDX_OPERAND_BUSY, Op::R8},      \
      {TDX_PAGE_METADATA_INCORRECT, Op::R8}, {TDX_MISSING_PAMT_PAGE_PAIR, Op::R8}
// PAGEINFO, the tree lock, the walk, the entry lock, the entry's state.
#define WALK_ENTRY                                                                                        \
  {TDX_OPERAND_INVALID, Op::RCX}, {TDX_OPERAND_BUSY, Op::SEPT_TREE}, {TDX_EPT_WALK_FAILED, Op::RCX},      \
      {TDX_OPERAND_BUSY, Op::RCX}, {TDX_EPT_ENTRY_STATE_INCORRECT, Op::RCX}
#define TRACKING {TDX_GPA_RANGE_NOT_BLOCKED, Op::RCX}, {TDX_TLB_TRACKING_NOT_DONE, Op::RCX}
// The teardown leaves that name the TDR in RCX and lock it exclusively.
#define TDR_RCX                                                                                           \
  {TDX_OPERAND_INVALID, Op::RCX}, {TDX_OPERAND_ADDR_RANGE_ERROR, Op::RCX}, {TDX_OPERAND_BUSY, Op::RCX},   \
      {TDX_PAGE_METADATA_INCORRECT, Op::RCX}

struct LeafErrors {
  Leaf leaf;
  std::vector<LeafError> errors;
};

const std::vector<LeafErrors>& table() {
  static const std::vector<LeafErrors> t = {
      {Leaf::MEM_PAGE_AUG, {TDP_RDX, WALK_ENTRY, PAGE_R8}},
      {Leaf::MEM_PAGE_ADD,
       {TDP_RDX, {TDX_OPERAND_INVALID, Op::RCX}, {TDX_EPT_WALK_FAILED, Op::RCX},
        {TDX_EPT_ENTRY_STATE_INCORRECT, Op::RCX}, {TDX_OPERAND_INVALID, Op::R9}, PAGE_R8}},
      {Leaf::MEM_SEPT_ADD, {TDP_RDX, WALK_ENTRY, PAGE_R8}},
      {Leaf::MEM_RANGE_BLOCK, {TDP_RDX, WALK_ENTRY, {TDX_GPA_RANGE_ALREADY_BLOCKED, Op::RCX}}},
      {Leaf::MEM_RANGE_UNBLOCK, {TDP_RDX, WALK_ENTRY, {TDX_TLB_TRACKING_NOT_DONE, Op::RCX}}},
      {Leaf::MEM_TRACK,
       {TDR_RCX, {TDX_TD_FATAL, Op::RAX}, {TDX_OPERAND_BUSY, Op::TD_EPOCH}, {TDX_PREVIOUS_TLB_EPOCH_BUSY, Op::RAX}}},
      {Leaf::MEM_PAGE_REMOVE, {TDP_RDX, WALK_ENTRY, TRACKING}},
      {Leaf::MEM_SEPT_REMOVE, {TDP_RDX, WALK_ENTRY, TRACKING, {TDX_EPT_PAGE_NOT_FREE, Op::RCX}}},
      {Leaf::MEM_PAGE_DEMOTE, {TDP_RDX, WALK_ENTRY, TRACKING, PAGE_R8, {TDX_INTERRUPTED_RESTARTABLE, Op::RAX}}},
      {Leaf::MEM_PAGE_PROMOTE,
       {TDP_RDX, WALK_ENTRY, TRACKING, {TDX_EPT_INVALID_PROMOTE_CONDITIONS, Op::RCX},
        {TDX_INTERRUPTED_RESTARTABLE, Op::RAX}}},
      {Leaf::PHYMEM_PAGE_RECLAIM,
       {{TDX_OPERAND_INVALID, Op::RCX}, {TDX_OPERAND_ADDR_RANGE_ERROR, Op::RCX}, {TDX_OPERAND_BUSY, Op::RCX},
        {TDX_PAGE_METADATA_INCORRECT, Op::RCX}, {TDX_OPERAND_BUSY, Op::TDR}, {TDX_LIFECYCLE_STATE_INCORRECT, Op::RAX},
        {TDX_TD_ASSOCIATED_PAGES_EXIST, Op::RAX}}},
      {Leaf::PHYMEM_PAGE_WBINVD,
       {{TDX_OPERAND_INVALID, Op::RCX}, {TDX_OPERAND_ADDR_RANGE_ERROR, Op::RCX}, {TDX_OPERAND_BUSY, Op::RCX},
        {TDX_PAGE_METADATA_INCORRECT, Op::RCX}}},
      {Leaf::VP_ENTER,
       {{TDX_OPERAND_BUSY, Op::RCX}, {TDX_OPERAND_BUSY, Op::TDR}, {TDX_OPERAND_BUSY, Op::OP_STATE},
        {TDX_OPERAND_BUSY, Op::TD_EPOCH}, {TDX_OPERAND_BUSY, Op::SEPT_TREE}, {TDX_TD_FATAL, Op::RAX},
        {TDX_OP_STATE_INCORRECT, Op::RAX}}},
      {Leaf::VP_FLUSH, {{TDX_OPERAND_BUSY, Op::RCX}, {TDX_OPERAND_BUSY, Op::TDR}, {TDX_TD_KEYS_NOT_CONFIGURED, Op::RAX}}},
      {Leaf::MNG_VPFLUSHDONE, {TDR_RCX, {TDX_LIFECYCLE_STATE_INCORRECT, Op::RAX}, {TDX_FLUSHVP_NOT_DONE, Op::RAX}}},
      {Leaf::PHYMEM_CACHE_WB, {{TDX_OPERAND_INVALID, Op::RCX}, {TDX_INTERRUPTED_RESUMABLE, Op::RAX}}},
      {Leaf::MNG_KEY_FREEID, {TDR_RCX, {TDX_LIFECYCLE_STATE_INCORRECT, Op::RAX}, {TDX_WBCACHE_NOT_COMPLETE, Op::RAX}}},
      {Leaf::PHYMEM_PAMT_ADD,
       {{TDX_OPERAND_INVALID, Op::RCX}, {TDX_OPERAND_BUSY, Op::RCX}, {TDX_OPERAND_INVALID, Op::RDX},
        {TDX_PAGE_METADATA_INCORRECT, Op::RDX}, {TDX_HPA_RANGE_NOT_FREE, Op::RCX}}},
      {Leaf::PHYMEM_PAMT_REMOVE,
       {{TDX_OPERAND_INVALID, Op::RCX}, {TDX_OPERAND_BUSY, Op::RCX}, {TDX_NO_PAMT_PAGE_PAIR, Op::RCX},
        {TDX_PAMT_PAGE_NOT_EMPTY, Op::RAX}}},
  };
  return t;
}

#undef TDP_RDX
#undef PAGE_R8
#undef WALK_ENTRY
#undef TRACKING
#undef TDR_RCX

}  // namespace

const std::vector<LeafError>& leaf_errors(Leaf leaf) {
  static const std::vector<LeafError> none;
  for (const auto& t : table())
    if (t.leaf == leaf) return t.errors;
  return none;
}

const std::vector<Status>& injectable_errors(Leaf leaf) {
  static const auto all = [] {
    std::array<std::vector<Status>, kLeafCount> a;
    for (size_t l = 0; l < kLeafCount; l++)
      for (const LeafError& e : leaf_errors(static_cast<Leaf>(l))) {
        const Status s = with_operand(e.base, e.operand);
        if (!is_busy(s) && std::find(a[l].begin(), a[l].end(), s) == a[l].end()) a[l].push_back(s);
      }
    return a;
  }();
  return all[static_cast<size_t>(leaf)];
}

std::optional<Leaf> leaf_by_name(std::string_view name) {
  for (size_t i = 0; i < kLeafCount; i++)
    if (name == leaf_name(static_cast<Leaf>(i))) return static_cast<Leaf>(i);
  return std::nullopt;
}

std::optional<Status> injectable_status(Leaf leaf, std::string_view name) {
  // "TDX_OPERAND_BUSY" picks the leaf's first BUSY; "TDX_OPERAND_BUSY|SEPT_TREE" a given operand.
  for (const LeafError& e : leaf_errors(leaf)) {
    const Status s = with_operand(e.base, e.operand);
    if (name == status_name(e.base) || name == status_str(s)) return s;
  }
  return std::nullopt;
}

}  // namespace mirrormmu::tdx
