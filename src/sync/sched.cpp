// SPDX-License-Identifier: MIT
#include "sync/sched.h"

namespace mirrormmu::sync {

namespace detail {
std::atomic<SchedHandler> g_handler{nullptr};
}

void set_sched_handler(SchedHandler h) { detail::g_handler.store(h, std::memory_order_seq_cst); }

const char* point_kind_name(PointKind k) {
  switch (k) {
    case PointKind::LockAcquire: return "lock";
    case PointKind::LockRelease: return "unlock";
    case PointKind::LockAcquireShared: return "read_lock";
    case PointKind::SpteRead: return "read";
    case PointKind::SpteCmpxchg: return "cmpxchg";
    case PointKind::SpteStore: return "store";
    case PointKind::Seamcall: return "seamcall";
    case PointKind::ModuleTryLock: return "trylock";
    case PointKind::RcuReadLock: return "rcu_read_lock";
    case PointKind::RcuReadUnlock: return "rcu_read_unlock";
    case PointKind::Yield: return "yield";
    case PointKind::GuestAccess: return "access";
    case PointKind::InstructionBoundary: return "boundary";
  }
  return "?";
}

}  // namespace mirrormmu::sync
