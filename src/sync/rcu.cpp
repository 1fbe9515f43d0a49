#include "sync/rcu.h"

#include "sync/det_engine.h"

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

namespace detail {
std::atomic<bool> g_det_rcu{false};
void det_rcu_read_lock() { DetEngine::active()->rcu_read_lock(); }
void det_rcu_read_unlock() { DetEngine::active()->rcu_read_unlock(); }
}  // namespace detail

bool rcu_read_lock_held() {
  if (DetEngine* e = DetEngine::active()) return e->rcu_read_lock_held();
  return urcu_memb_read_ongoing() != 0;
}

void call_rcu(RcuHead* head, RcuCallback fn) {
  if (DetEngine* e = DetEngine::active())
    e->call_rcu(head, fn);
  else
    urcu_memb_call_rcu(head, fn);
}

void rcu_barrier() {
  if (DetEngine* e = DetEngine::active())
    e->rcu_barrier();
  else
    urcu_memb_barrier();
}

}  // namespace mirrormmu::sync
