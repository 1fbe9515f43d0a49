// SPDX-License-Identifier: MIT
#include "tdx/status.h"

#include <fmt/format.h>

namespace mirrormmu::tdx {

namespace {

struct StatusName {
  Status base;
  const char* name;
};

constexpr StatusName kStatusNames[] = {
    {TDX_SUCCESS, "TDX_SUCCESS"},
    {TDX_INTERRUPTED_RESUMABLE, "TDX_INTERRUPTED_RESUMABLE"},
    {TDX_INTERRUPTED_RESTARTABLE, "TDX_INTERRUPTED_RESTARTABLE"},
    {TDX_OPERAND_INVALID, "TDX_OPERAND_INVALID"},
    {TDX_OPERAND_ADDR_RANGE_ERROR, "TDX_OPERAND_ADDR_RANGE_ERROR"},
    {TDX_OPERAND_BUSY, "TDX_OPERAND_BUSY"},
    {TDX_PREVIOUS_TLB_EPOCH_BUSY, "TDX_PREVIOUS_TLB_EPOCH_BUSY"},
    {TDX_OPERAND_BUSY_HOST_PRIORITY, "TDX_OPERAND_BUSY_HOST_PRIORITY"},
    {TDX_PAGE_METADATA_INCORRECT, "TDX_PAGE_METADATA_INCORRECT"},
    {TDX_PAGE_NOT_FREE, "TDX_PAGE_NOT_FREE"},
    {TDX_HPA_RANGE_NOT_FREE, "TDX_HPA_RANGE_NOT_FREE"},
    {TDX_NO_PAMT_PAGE_PAIR, "TDX_NO_PAMT_PAGE_PAIR"},
    {TDX_PAMT_PAGE_NOT_EMPTY, "TDX_PAMT_PAGE_NOT_EMPTY"},
    {TDX_MISSING_PAMT_PAGE_PAIR, "TDX_MISSING_PAMT_PAGE_PAIR"},
    {TDX_TD_ASSOCIATED_PAGES_EXIST, "TDX_TD_ASSOCIATED_PAGES_EXIST"},
    {TDX_TD_FATAL, "TDX_TD_FATAL"},
    {TDX_TDCS_NOT_ALLOCATED, "TDX_TDCS_NOT_ALLOCATED"},
    {TDX_LIFECYCLE_STATE_INCORRECT, "TDX_LIFECYCLE_STATE_INCORRECT"},
    {TDX_OP_STATE_INCORRECT, "TDX_OP_STATE_INCORRECT"},
    {TDX_NO_VCPUS, "TDX_NO_VCPUS"},
    {TDX_VCPU_NOT_ASSOCIATED, "TDX_VCPU_NOT_ASSOCIATED"},
    {TDX_TD_KEYS_NOT_CONFIGURED, "TDX_TD_KEYS_NOT_CONFIGURED"},
    {TDX_KEY_STATE_INCORRECT, "TDX_KEY_STATE_INCORRECT"},
    {TDX_WBCACHE_NOT_COMPLETE, "TDX_WBCACHE_NOT_COMPLETE"},
    {TDX_NO_HKID_READY_TO_WBCACHE, "TDX_NO_HKID_READY_TO_WBCACHE"},
    {TDX_FLUSHVP_NOT_DONE, "TDX_FLUSHVP_NOT_DONE"},
    {TDX_EPT_WALK_FAILED, "TDX_EPT_WALK_FAILED"},
    {TDX_EPT_ENTRY_NOT_PRESENT, "TDX_EPT_ENTRY_NOT_PRESENT"},
    {TDX_GPA_RANGE_NOT_BLOCKED, "TDX_GPA_RANGE_NOT_BLOCKED"},
    {TDX_GPA_RANGE_ALREADY_BLOCKED, "TDX_GPA_RANGE_ALREADY_BLOCKED"},
    {TDX_TLB_TRACKING_NOT_DONE, "TDX_TLB_TRACKING_NOT_DONE"},
    {TDX_EPT_INVALID_PROMOTE_CONDITIONS, "TDX_EPT_INVALID_PROMOTE_CONDITIONS"},
    {TDX_PAGE_ALREADY_ACCEPTED, "TDX_PAGE_ALREADY_ACCEPTED"},
    {TDX_PAGE_SIZE_MISMATCH, "TDX_PAGE_SIZE_MISMATCH"},
    {TDX_EPT_ENTRY_STATE_INCORRECT, "TDX_EPT_ENTRY_STATE_INCORRECT"},
    {TDX_EPT_PAGE_NOT_FREE, "TDX_EPT_PAGE_NOT_FREE"},
};

const char* operand_name(uint32_t op) {
  switch (static_cast<Operand>(op)) {
    case Operand::RAX: return "RAX";
    case Operand::RCX: return "RCX";
    case Operand::RDX: return "RDX";
    case Operand::R8: return "R8";
    case Operand::R9: return "R9";
    case Operand::R12: return "R12";
    case Operand::R13: return "R13";
    case Operand::TDR: return "TDR";
    case Operand::TDCX: return "TDCX";
    case Operand::TDVPR: return "TDVPR";
    case Operand::SEPT_TREE: return "SEPT_TREE";
    case Operand::SEPT_ENTRY: return "SEPT_ENTRY";
    case Operand::TD_EPOCH: return "TD_EPOCH";
    case Operand::OP_STATE: return "OP_STATE";
  }
  return nullptr;
}

// For the guest's ACCEPT results the low bits are an S-EPT level, not an
// operand id, so "|RCX" would mislead whoever reads a trace.
bool detail_is_level(Status base) {
  return base == TDX_PAGE_ALREADY_ACCEPTED || base == TDX_PAGE_SIZE_MISMATCH;
}

}  // namespace

std::string status_name(Status s) {
  const Status base = status_base(s);
  for (const auto& n : kStatusNames) {
    if (n.base == base) return n.name;
  }
  return fmt::format("{:#018x}", base);
}

std::string status_str(Status s) {
  const Status base = status_base(s);
  const auto detail = static_cast<uint32_t>(s & ~kStatusMask);
  std::string out = status_name(base);
  if (detail == 0) return out;
  if (detail_is_level(base)) return fmt::format("{}|level {}", out, detail);
  // PAMT.REMOVE's detail says which page of the pair holds an entry in use.
  if (base == TDX_PAMT_PAGE_NOT_EMPTY) return fmt::format("{}|page {}", out, detail);
  if (const char* op = operand_name(detail)) return fmt::format("{}|{}", out, op);
  return fmt::format("{}|{:#x}", out, detail);
}

const char* leaf_name(Leaf l) {
  switch (l) {
    case Leaf::VP_ENTER: return "TDH.VP.ENTER";
    case Leaf::MNG_ADDCX: return "TDH.MNG.ADDCX";
    case Leaf::MEM_PAGE_ADD: return "TDH.MEM.PAGE.ADD";
    case Leaf::MEM_SEPT_ADD: return "TDH.MEM.SEPT.ADD";
    case Leaf::VP_ADDCX: return "TDH.VP.ADDCX";
    case Leaf::MEM_PAGE_AUG: return "TDH.MEM.PAGE.AUG";
    case Leaf::MEM_RANGE_BLOCK: return "TDH.MEM.RANGE.BLOCK";
    case Leaf::MNG_KEY_CONFIG: return "TDH.MNG.KEY.CONFIG";
    case Leaf::MNG_CREATE: return "TDH.MNG.CREATE";
    case Leaf::VP_CREATE: return "TDH.VP.CREATE";
    case Leaf::MEM_PAGE_DEMOTE: return "TDH.MEM.PAGE.DEMOTE";
    case Leaf::MR_EXTEND: return "TDH.MR.EXTEND";
    case Leaf::MR_FINALIZE: return "TDH.MR.FINALIZE";
    case Leaf::VP_FLUSH: return "TDH.VP.FLUSH";
    case Leaf::MNG_VPFLUSHDONE: return "TDH.MNG.VPFLUSHDONE";
    case Leaf::MNG_KEY_FREEID: return "TDH.MNG.KEY.FREEID";
    case Leaf::MNG_INIT: return "TDH.MNG.INIT";
    case Leaf::VP_INIT: return "TDH.VP.INIT";
    case Leaf::MEM_PAGE_PROMOTE: return "TDH.MEM.PAGE.PROMOTE";
    case Leaf::MEM_SEPT_RD: return "TDH.MEM.SEPT.RD";
    case Leaf::PHYMEM_PAGE_RECLAIM: return "TDH.PHYMEM.PAGE.RECLAIM";
    case Leaf::MEM_PAGE_REMOVE: return "TDH.MEM.PAGE.REMOVE";
    case Leaf::MEM_SEPT_REMOVE: return "TDH.MEM.SEPT.REMOVE";
    case Leaf::MEM_TRACK: return "TDH.MEM.TRACK";
    case Leaf::MEM_RANGE_UNBLOCK: return "TDH.MEM.RANGE.UNBLOCK";
    case Leaf::PHYMEM_CACHE_WB: return "TDH.PHYMEM.CACHE.WB";
    case Leaf::PHYMEM_PAGE_WBINVD: return "TDH.PHYMEM.PAGE.WBINVD";
    case Leaf::PHYMEM_PAMT_ADD: return "TDH.PHYMEM.PAMT.ADD";
    case Leaf::PHYMEM_PAMT_REMOVE: return "TDH.PHYMEM.PAMT.REMOVE";
    case Leaf::TDG_MEM_PAGE_ACCEPT: return "TDG.MEM.PAGE.ACCEPT";
    case Leaf::kCount: break;
  }
  return "?";
}

int leaf_number(Leaf l) {
  switch (l) {
    case Leaf::VP_ENTER: return 0;
    case Leaf::MNG_ADDCX: return 1;
    case Leaf::MEM_PAGE_ADD: return 2;
    case Leaf::MEM_SEPT_ADD: return 3;
    case Leaf::VP_ADDCX: return 4;
    case Leaf::MEM_PAGE_AUG: return 6;
    case Leaf::MEM_RANGE_BLOCK: return 7;
    case Leaf::MNG_KEY_CONFIG: return 8;
    case Leaf::MNG_CREATE: return 9;
    case Leaf::VP_CREATE: return 10;
    case Leaf::MEM_PAGE_DEMOTE: return 15;
    case Leaf::MR_EXTEND: return 16;
    case Leaf::MR_FINALIZE: return 17;
    case Leaf::VP_FLUSH: return 18;
    case Leaf::MNG_VPFLUSHDONE: return 19;
    case Leaf::MNG_KEY_FREEID: return 20;
    case Leaf::MNG_INIT: return 21;
    case Leaf::VP_INIT: return 22;
    case Leaf::MEM_PAGE_PROMOTE: return 23;
    case Leaf::MEM_SEPT_RD: return 25;
    case Leaf::PHYMEM_PAGE_RECLAIM: return 28;
    case Leaf::MEM_PAGE_REMOVE: return 29;
    case Leaf::MEM_SEPT_REMOVE: return 30;
    case Leaf::MEM_TRACK: return 38;
    case Leaf::MEM_RANGE_UNBLOCK: return 39;
    case Leaf::PHYMEM_CACHE_WB: return 40;
    case Leaf::PHYMEM_PAGE_WBINVD: return 41;
    case Leaf::PHYMEM_PAMT_ADD: return 58;
    case Leaf::PHYMEM_PAMT_REMOVE: return 59;
    case Leaf::TDG_MEM_PAGE_ACCEPT: return 6;  // TDCALL leaf, a separate number space
    case Leaf::kCount: break;
  }
  return -1;
}

}  // namespace mirrormmu::tdx
