#include "sync/rcu.h"

namespace mirrormmu::sync {

namespace {
thread_local int tl_registered = 0;
}

RcuThread::RcuThread() {
  if (tl_registered++ == 0) urcu_memb_register_thread();
}

RcuThread::~RcuThread() {
  if (--tl_registered == 0) urcu_memb_unregister_thread();
}

bool rcu_read_lock_held() { return urcu_memb_read_ongoing() != 0; }

void call_rcu(RcuHead* head, RcuCallback fn) { urcu_memb_call_rcu(head, fn); }

void rcu_barrier() { urcu_memb_barrier(); }

}  // namespace mirrormmu::sync
