// SPDX-License-Identifier: MIT
// TDX module status codes (RAX), operand ids and SEAMCALL leaf numbers, with
// the values the module and the kernel use. Callers compare the upper 32 bits
// (status & kStatusMask) and read the operand id from the low 32 bits.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mirrormmu::tdx {

using Status = uint64_t;

inline constexpr Status kStatusMask = 0xFFFFFFFF00000000ull;  // TDX_SEAMCALL_STATUS_MASK

inline constexpr Status TDX_SUCCESS = 0;
// VMEXIT_REASON_EPT_VIOLATION in bits 31:0 with a success class: how
// TDH.VP.ENTER reports a TD exit on an EPT violation (also the zero-step
// filter's exit without entering the guest).
inline constexpr Status TDX_EXIT_EPT_VIOLATION = 48;
inline constexpr Status TDX_INTERRUPTED_RESUMABLE = 0x8000000300000000ull;
inline constexpr Status TDX_INTERRUPTED_RESTARTABLE = 0x8000000400000000ull;
inline constexpr Status TDX_OPERAND_INVALID = 0xC000010000000000ull;
inline constexpr Status TDX_OPERAND_ADDR_RANGE_ERROR = 0xC000010100000000ull;
inline constexpr Status TDX_OPERAND_BUSY = 0x8000020000000000ull;
inline constexpr Status TDX_PREVIOUS_TLB_EPOCH_BUSY = 0x8000020100000000ull;
inline constexpr Status TDX_OPERAND_BUSY_HOST_PRIORITY = 0x8000020400000000ull;
inline constexpr Status TDX_PAGE_METADATA_INCORRECT = 0xC000030000000000ull;
inline constexpr Status TDX_PAGE_NOT_FREE = 0xC000030300000000ull;
inline constexpr Status TDX_HPA_RANGE_NOT_FREE = 0xC000030400000000ull;
inline constexpr Status TDX_NO_PAMT_PAGE_PAIR = 0xC000030500000000ull;
inline constexpr Status TDX_PAMT_PAGE_NOT_EMPTY = 0xC000030600000000ull;
inline constexpr Status TDX_MISSING_PAMT_PAGE_PAIR = 0x8000030800000000ull;
inline constexpr Status TDX_TD_ASSOCIATED_PAGES_EXIST = 0xC000040000000000ull;
inline constexpr Status TDX_TD_FATAL = 0xE000060400000000ull;
inline constexpr Status TDX_TDCS_NOT_ALLOCATED = 0xC000060600000000ull;
inline constexpr Status TDX_LIFECYCLE_STATE_INCORRECT = 0xC000060700000000ull;
inline constexpr Status TDX_OP_STATE_INCORRECT = 0xC000060800000000ull;
inline constexpr Status TDX_NO_VCPUS = 0xC000060900000000ull;
inline constexpr Status TDX_VCPU_NOT_ASSOCIATED = 0x8000070200000000ull;
inline constexpr Status TDX_TD_KEYS_NOT_CONFIGURED = 0x8000081000000000ull;
inline constexpr Status TDX_KEY_STATE_INCORRECT = 0xC000081100000000ull;
inline constexpr Status TDX_WBCACHE_NOT_COMPLETE = 0x8000081700000000ull;
inline constexpr Status TDX_NO_HKID_READY_TO_WBCACHE = 0x0000082100000000ull;
inline constexpr Status TDX_FLUSHVP_NOT_DONE = 0x8000082400000000ull;
inline constexpr Status TDX_EPT_WALK_FAILED = 0xC0000B0000000000ull;
inline constexpr Status TDX_EPT_ENTRY_NOT_PRESENT = 0xC0000B0300000000ull;
inline constexpr Status TDX_GPA_RANGE_NOT_BLOCKED = 0xC0000B0600000000ull;
inline constexpr Status TDX_GPA_RANGE_ALREADY_BLOCKED = 0x00000B0700000000ull;
inline constexpr Status TDX_TLB_TRACKING_NOT_DONE = 0xC0000B0800000000ull;
inline constexpr Status TDX_EPT_INVALID_PROMOTE_CONDITIONS = 0xC0000B0900000000ull;
inline constexpr Status TDX_PAGE_ALREADY_ACCEPTED = 0x00000B0A00000000ull;
inline constexpr Status TDX_PAGE_SIZE_MISMATCH = 0xC0000B0B00000000ull;
inline constexpr Status TDX_EPT_ENTRY_STATE_INCORRECT = 0xC0000B0D00000000ull;
inline constexpr Status TDX_EPT_PAGE_NOT_FREE = 0xC0000B0E00000000ull;

// Operand ids (low 32 bits of the status).
enum class Operand : uint32_t {
  RAX = 0, RCX = 1, RDX = 2, R8 = 8, R9 = 9, R12 = 12, R13 = 13,
  TDR = 0x80, TDCX = 0x81, TDVPR = 0x82, SEPT_TREE = 0x92, SEPT_ENTRY = 0x93,
  TD_EPOCH = 0xA9, OP_STATE = 0xAC,
};

constexpr Status with_operand(Status base, Operand op) { return base | static_cast<uint32_t>(op); }
constexpr Status status_base(Status s) { return s & kStatusMask; }
constexpr bool is_busy(Status s) { return status_base(s) == TDX_OPERAND_BUSY; }
constexpr bool is_error(Status s) { return (s >> 63) != 0; }

// Name of a status base ("TDX_OPERAND_BUSY"), or hex if unknown.
std::string status_name(Status s);
// "TDX_OPERAND_BUSY|SEPT_TREE"-style rendering with the operand.
std::string status_str(Status s);

// SEAMCALL and TDCALL leaves the model implements.
enum class Leaf : uint8_t {
  VP_ENTER, MNG_ADDCX, MEM_PAGE_ADD, MEM_SEPT_ADD, VP_ADDCX, MEM_PAGE_AUG, MEM_RANGE_BLOCK,
  MNG_KEY_CONFIG, MNG_CREATE, VP_CREATE, MEM_PAGE_DEMOTE, MR_EXTEND, MR_FINALIZE, VP_FLUSH,
  MNG_VPFLUSHDONE, MNG_KEY_FREEID, MNG_INIT, VP_INIT, MEM_PAGE_PROMOTE, MEM_SEPT_RD,
  PHYMEM_PAGE_RECLAIM, MEM_PAGE_REMOVE, MEM_SEPT_REMOVE, MEM_TRACK, MEM_RANGE_UNBLOCK,
  PHYMEM_CACHE_WB, PHYMEM_PAGE_WBINVD, PHYMEM_PAMT_ADD, PHYMEM_PAMT_REMOVE,
  TDG_MEM_PAGE_ACCEPT,  // guest TDCALL
  kCount
};
inline constexpr size_t kLeafCount = static_cast<size_t>(Leaf::kCount);
// "TDH.MEM.PAGE.AUG" etc.
const char* leaf_name(Leaf l);
std::optional<Leaf> leaf_by_name(std::string_view name);

// The failures a host leaf can return (leaf_errors.cpp), each with the
// operand id it usually names. Empty for a leaf failures are not injected
// into (the guest's TDCALL, the build-only leaves).
struct LeafError {
  Status base;
  Operand operand;
};
const std::vector<LeafError>& leaf_errors(Leaf leaf);
// The same as full statuses (operand included), BUSY left out: what an
// explorer's SeamcallError choice picks from.
const std::vector<Status>& injectable_errors(Leaf leaf);
// The status `name` ("TDX_EPT_ENTRY_STATE_INCORRECT", or with an operand,
// "TDX_OPERAND_BUSY|SEPT_TREE") if `leaf` can return it.
std::optional<Status> injectable_status(Leaf leaf, std::string_view name);
// Architectural leaf number (RAX bits 15:0), e.g. 6 for PAGE.AUG.
int leaf_number(Leaf l);

}  // namespace mirrormmu::tdx
