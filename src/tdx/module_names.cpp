// SPDX-License-Identifier: MIT
// Printable names and public codes of the module's enums.
#include "tdx/module.h"

namespace mirrormmu::tdx {

const char* sept_state_name(SeptState s) {
  switch (s) {
    case SeptState::Free: return "FREE";
    case SeptState::NlMapped: return "NL_MAPPED";
    case SeptState::NlBlocked: return "NL_BLOCKED";
    case SeptState::Mapped: return "MAPPED";
    case SeptState::Blocked: return "BLOCKED";
    case SeptState::Pending: return "PENDING";
    case SeptState::PendingBlocked: return "PENDING_BLOCKED";
  }
  return "?";
}

// The value TDH.MEM.SEPT.RD and the error paths put in RDX[15:8]: bit 7 says
// non-leaf, the low bits are the state.
uint8_t sept_state_public_code(SeptState s) {
  switch (s) {
    case SeptState::Free: return 0x00;
    case SeptState::NlMapped: return 0x84;
    case SeptState::NlBlocked: return 0x81;
    case SeptState::Mapped: return 0x04;
    case SeptState::Blocked: return 0x01;
    case SeptState::Pending: return 0x02;
    case SeptState::PendingBlocked: return 0x03;
  }
  return 0xFF;
}

const char* op_state_name(OpState s) {
  switch (s) {
    case OpState::Uninitialized: return "UNINITIALIZED";
    case OpState::Initialized: return "INITIALIZED";
    case OpState::Runnable: return "RUNNABLE";
  }
  return "?";
}

const char* lifecycle_name(Lifecycle s) {
  switch (s) {
    case Lifecycle::None: return "NONE";
    case Lifecycle::HkidAssigned: return "HKID_ASSIGNED";
    case Lifecycle::KeysConfigured: return "KEYS_CONFIGURED";
    case Lifecycle::Blocked: return "BLOCKED";
    case Lifecycle::Teardown: return "TEARDOWN";
  }
  return "?";
}

const char* pamt_type_name(PamtType t) {
  switch (t) {
    case PamtType::Nda: return "PT_NDA";
    case PamtType::Reg: return "PT_REG";
    case PamtType::Tdr: return "PT_TDR";
    case PamtType::Tdcx: return "PT_TDCX";
    case PamtType::Tdvpr: return "PT_TDVPR";
    case PamtType::Ept: return "PT_EPT";
    case PamtType::Pamt: return "PT_PAMT";
  }
  return "?";
}

}  // namespace mirrormmu::tdx
