// SPDX-License-Identifier: MIT
#include "sync/det_engine.h"

#include <algorithm>
#include <cstdlib>
#include <thread>
#include <utility>

#include "base/inject.h"
#include "base/page_blocks.h"
#include "base/running_vcpu.h"
#include "sync/fiber.h"
#include "sync/spte_atomic.h"
#include "sync/vthread_locals.h"

namespace mirrormmu::sync {

std::atomic<DetEngine*> DetEngine::g_active{nullptr};

namespace {
thread_local int tl_vthread = -1;

const int kNoVcpu = -1;
[[maybe_unused]] const int g_running_vcpu_local = register_vthread_local(
    +[]() -> void* { return &mirrormmu::detail::t_running_vcpu; }, &kNoVcpu, sizeof mirrormmu::detail::t_running_vcpu);

void engine_point(PointKind kind, const void* object) {
  if (DetEngine* e = DetEngine::active(); e && tl_vthread >= 0) e->point(kind, object);
}

Injection engine_injection(InjectPoint p, bool retry_path) {
  DetEngine* e = DetEngine::active();
  if (!e || tl_vthread < 0) return Injection::None;
  switch (p) {
    case InjectPoint::Seamcall:
      return e->fail_point(retry_path ? FailKind::RetryBusy : FailKind::SeamcallBusy) ? Injection::Busy
                                                                                       : Injection::None;
    case InjectPoint::HostInterrupt: return e->fail_point(FailKind::HostInterrupt) ? Injection::Busy : Injection::None;
    case InjectPoint::CacheTopup: return e->fail_point(FailKind::TopupNoMem) ? Injection::NoMem : Injection::None;
    case InjectPoint::SplitTable: return e->fail_point(FailKind::SplitTableNoMem) ? Injection::NoMem : Injection::None;
    case InjectPoint::PamtPair: return e->fail_point(FailKind::PamtPairNoMem) ? Injection::NoMem : Injection::None;
    case InjectPoint::kCount: break;
  }
  return Injection::None;
}

uint32_t engine_seamcall_error(uint32_t alternatives) {
  DetEngine* e = DetEngine::active();
  if (!e || tl_vthread < 0) return 0;
  return e->fail_choice(FailKind::SeamcallError, alternatives);
}
}  // namespace

namespace detail {
std::atomic<bool> g_cmpxchg_may_lose{false};
bool cmpxchg_should_lose() {
  DetEngine* e = DetEngine::active();
  return e && e->fail_point(FailKind::CmpxchgLoss);
}
}  // namespace detail

void wait_event(const void* object) {
  if (DetEngine* e = DetEngine::active(); e && tl_vthread >= 0) {
    e->block_on(object);
  } else {
    std::this_thread::yield();
  }
}

void wake_event(const void* object) {
  if (DetEngine* e = DetEngine::active(); e && tl_vthread >= 0) e->wake(object);
}

void cond_resched_spin(const void* object) {
  if (DetEngine* e = DetEngine::active(); e && tl_vthread >= 0) {
    e->yield_to_others(object);
  } else {
    std::this_thread::yield();
  }
}

namespace detail {
void touch_slow(const void* object) {
  if (DetEngine* e = DetEngine::active(); e && tl_vthread >= 0) e->touch(object);
}
}  // namespace detail

namespace {
// Whether `read`, only read by one step, is written by the other.
bool written(const void* read, const StepFootprint& other) {
  if (!read) return false;
  if (read == other.object && !other.reads_only) return true;
  for (int j = 0; j < other.ntouched; j++)
    if (other.touched[j] == read) return true;
  return false;
}

// Whether `f` reads or writes `x` in any way but adding to it.
bool accesses(const void* x, const StepFootprint& f) {
  if (f.object == x || f.page == x || f.also_read == x) return true;
  for (int j = 0; j < f.ntouched; j++)
    if (f.touched[j] == x) return true;
  return false;
}
}  // namespace

bool dependent(const StepFootprint& a, const StepFootprint& b) {
  if (a.global || b.global) return true;
  if (written(a.also_read, b) || written(b.also_read, a)) return true;
  if ((a.added && accesses(a.added, b)) || (b.added && accesses(b.added, a))) return true;
  if (a.object == b.object && !(a.reads_only && b.reads_only)) return true;
  // What a step touched it may have written.
  for (int i = 0; i < a.ntouched; i++) {
    if (a.touched[i] == b.object) return true;
    for (int j = 0; j < b.ntouched; j++)
      if (a.touched[i] == b.touched[j]) return true;
  }
  for (int j = 0; j < b.ntouched; j++)
    if (b.touched[j] == a.object || (a.page && b.touched[j] == a.page)) return true;
  if (b.page)
    for (int i = 0; i < a.ntouched; i++)
      if (a.touched[i] == b.page) return true;
  return false;
}

namespace {
// The grace-period state, as two objects. Which readers are inside: entering
// and leaving a read section add to it, so two entries or exits commute.
// The callback queue: call_rcu() writes it and entering reads it, since
// whether a callback waits for a reader depends on which came first. Leaving
// does not read it: a callback runs at the exit of its last reader, or at
// call_rcu() if that reader left before, and either way both steps end in the
// same state, so an exit and a call_rcu() commute. Running a callback names
// only what it frees. Aligned: the keys that stand for a page table or a
// lock's waiters and readers set low bits of an aligned address.
alignas(8) const char kRcuReaders = 0;
alignas(8) const char kRcuQueue = 0;

// The object that stands for a whole page table: its address with the low
// bit set, so that it never equals an entry's (entry 0 of the table shares
// the table's address, and a walk names the entries it reads).
const void* page_key(const void* p) {
  return reinterpret_cast<const void*>((reinterpret_cast<uintptr_t>(p) & ~uintptr_t(4095)) | 1);
}

// The step a thread takes when it resumes at a scheduling point. Every kind
// of point names what its step touches: an SPTE access its SPTE (and reads
// its table), an mmu_lock acquisition the lock (and, shared, its reader
// count), entering an RCU read section the grace-period state (leaving one,
// or a lock, happened at the end of the step before, which named it), a
// SEAMCALL or module try-lock the module (whose
// tracked mutex the step also names), an instruction boundary the vCPU, a
// guest access the guest caches (and the walk the entries it reads). A step
// becomes global only through what it does: an injected failure, a wait on
// a condition no point names. Written field by field: this runs at every
// scheduling point, and `touched` is only read up to ntouched.
void resume_at(StepFootprint& f, PointKind kind, const void* object) {
  f.kind = kind;
  // The steps that follow a release (the release itself ended the step
  // before) name nothing of their own: no other point has a null object.
  const bool after_release = kind == PointKind::RcuReadUnlock || kind == PointKind::LockRelease;
  f.object = kind == PointKind::RcuReadLock ? &kRcuQueue : after_release ? nullptr : object;
  f.global = false;
  // A yield in a long walk or a spin is followed at once by the point it
  // goes back to (the lock, the cmpxchg): its step does nothing. Taking a
  // lock shared reads its writer's state and adds to its reader count;
  // entering a read section reads the callback queue and adds to the
  // readers.
  f.reads_only = kind == PointKind::SpteRead || kind == PointKind::Yield || kind == PointKind::LockAcquireShared ||
                 kind == PointKind::RcuReadLock || after_release;
  f.added = kind == PointKind::RcuReadLock         ? static_cast<const void*>(&kRcuReaders)
            : kind == PointKind::LockAcquireShared ? DetEngine::readers_of(object)
                                                   : nullptr;
  f.page = kind == PointKind::SpteRead || kind == PointKind::SpteCmpxchg || kind == PointKind::SpteStore
               ? page_key(object)
               : nullptr;
  f.also_read = nullptr;
  f.ntouched = 0;
}
}  // namespace

bool forced_yield() {
  DetEngine* e = DetEngine::active();
  return e && e->fail_point(FailKind::ForcedYield);
}

const char* engine_event_name(EngineEvent e) {
  switch (e) {
    case EngineEvent::ThreadStart: return "start";
    case EngineEvent::ThreadEnd: return "end";
    case EngineEvent::LockRead: return "read_lock";
    case EngineEvent::LockWrite: return "write_lock";
    case EngineEvent::UnlockRead: return "read_unlock";
    case EngineEvent::UnlockWrite: return "write_unlock";
    case EngineEvent::Blocked: return "blocked";
    case EngineEvent::RcuReadLock: return "rcu_read_lock";
    case EngineEvent::RcuReadUnlock: return "rcu_read_unlock";
    case EngineEvent::CallRcu: return "call_rcu";
    case EngineEvent::RcuCallback: return "rcu_callback";
  }
  return "?";
}

const char* fail_kind_name(FailKind k) {
  switch (k) {
    case FailKind::SeamcallBusy: return "seamcall-busy";
    case FailKind::TopupNoMem: return "topup-nomem";
    case FailKind::CmpxchgLoss: return "cmpxchg-loss";
    case FailKind::ForcedYield: return "forced-yield";
    case FailKind::SeamcallError: return "seamcall-error";
    case FailKind::RetryBusy: return "retry-busy";
    case FailKind::SplitTableNoMem: return "split-nomem";
    case FailKind::PamtPairNoMem: return "pamt-nomem";
    case FailKind::HostInterrupt: return "host-interrupt";
    case FailKind::kCount: break;
  }
  return "?";
}

char fail_kind_letter(FailKind k) {
  static constexpr char kLetters[kFailKindCount + 1] = "btcyerspi";
  return k < FailKind::kCount ? kLetters[static_cast<size_t>(k)] : '?';
}

struct DetEngine::VThread {
  enum class State : uint8_t { Runnable, Blocked, Done };
  std::string name;
  std::unique_ptr<Fiber> fiber;
  VthreadLocals locals;
  State state = State::Runnable;
  const void* blocked_on = nullptr;
  int rcu_depth = 0;
  uint64_t rcu_since = 0;
  uint64_t last_ran = 0;  // handoff count when it last got the baton
  StepFootprint resume;   // the step it takes when it next gets the baton
};

DetEngine::DetEngine(DetStrategy& strategy, DetLimits limits) : strategy_(strategy), limits_(limits) {}

void DetEngine::touch_read(const void* object) {
  if (step_.also_read == nullptr || step_.also_read == object) {
    step_.also_read = object;
    return;
  }
  touch(object);  // a second one: as if written, which orders more, never less
}

void DetEngine::touch_add(const void* object) {
  if (step_.added == nullptr || step_.added == object) {
    step_.added = object;
    return;
  }
  touch(object);  // a second one: as if written
}

void DetEngine::touch(const void* object) {
  if (step_.ntouched == StepFootprint::kMaxTouched) {
    step_.global = true;
    return;
  }
  for (int i = 0; i < step_.ntouched; i++)
    if (step_.touched[i] == object) return;
  step_.touched[step_.ntouched++] = object;
}

uint64_t DetEngine::fast_forward_limit(const void* table) const {
  if (!limits_.fast_forward || aborting_ || tl_vthread < 0 || g_active.load(std::memory_order_relaxed) != this)
    return 0;
  if (limits_.fail_budget[static_cast<size_t>(FailKind::ForcedYield)] > 0 || strategy_.wants_steps()) return 0;
  for (size_t i = first_of_run_; i < threads_.size(); i++)
    if (static_cast<int>(i) != tl_vthread && threads_[i]->state != VThread::State::Done) return 0;
  if (!quarantine_.empty() && quarantined_.contains(reinterpret_cast<uintptr_t>(table) & ~uintptr_t(4095))) return 0;
  return limits_.max_steps > steps_ ? limits_.max_steps - steps_ : 0;
}

void DetEngine::fast_forward_take(uint64_t n) {
  steps_ += n;
  fast_forwarded_ += n;
}

bool DetEngine::fast_forward(const void* table, uint64_t n) {
  if (fast_forward_limit(table) < n) return false;
  fast_forward_take(n);
  return true;
}

void DetEngine::note(EngineEvent e, const void* object) {
  switch (e) {
    // Taking a lock exclusive writes its state (the lock's own object) and
    // reads its reader count; taking it shared reads the first (its point
    // named it) and adds to the second, as dropping it does. What the holder
    // then touches is the lock's to order.
    case EngineEvent::LockWrite:
      touch(object);
      touch(readers_of(object));
      break;
    case EngineEvent::UnlockWrite:
      touch(object);
      break;
    case EngineEvent::LockRead: case EngineEvent::UnlockRead:
      touch_add(readers_of(object));
      break;
    // Entering also reads the queue: its point named that.
    case EngineEvent::RcuReadLock: case EngineEvent::RcuReadUnlock:
      touch_add(&kRcuReaders);
      break;
    case EngineEvent::CallRcu:
      touch(&kRcuQueue);
      break;
    // A callback whose grace period is over: what it frees names itself
    // (the pool's mutex, the quarantined table, the module's mutex).
    case EngineEvent::RcuCallback:
      touch(object);
      break;
    // Ending is no access of its own: what the thread's last code touched
    // was named by its points, and thread_main() adds what ending sets off.
    case EngineEvent::ThreadEnd:
      break;
    default:
      step_.global = true;
  }
  if (sink_) sink_->on_engine_event(current(), e, object);
}

void DetEngine::end_step() { strategy_.on_step(tl_vthread, step_); }

void DetEngine::quarantine(void* page) {
  // Ordered against every access into the table (StepFootprint::page).
  touch(page_key(page));
  quarantine_.push_back(page);
  quarantined_.insert(reinterpret_cast<uintptr_t>(page));
}

// An aborted execution leaves its threads suspended inside MMU code for good,
// holding locks and pointers into the VM: the caller keeps this object (and
// the VM) instead of destroying it, and a fiber that started and did not end
// is never unwound (see Fiber).
DetEngine::~DetEngine() {
  // No execution can reach them any more: kept for the next one's tables.
  for (void* p : quarantine_) page_block_recycle(p);
}

const std::string& DetEngine::thread_name(int id) const { return threads_[id]->name; }

int DetEngine::current() const { return g_active.load() == this ? tl_vthread : -1; }

int DetEngine::spawn(std::string name, std::function<void()> fn) {
  auto t = std::make_unique<VThread>();
  t->name = std::move(name);
  const int id = static_cast<int>(threads_.size());
  t->fiber = std::make_unique<Fiber>([this, id, fn = std::move(fn)] { thread_main(id, fn); });
  // A thread's first step runs its own code up to its first scheduling
  // point: what it touches there is named by that point, or by sched_touch.
  t->resume.global = false;
  t->resume.reads_only = true;
  threads_.push_back(std::move(t));
  return static_cast<int>(threads_.size() - 1);
}

void DetEngine::thread_main(int id, const std::function<void()>& fn) {
  VThread& me = *threads_[id];
  // Not note(): starting is no access of its own (see spawn()).
  if (sink_) sink_->on_engine_event(id, EngineEvent::ThreadStart, nullptr);
  fn();
  note(EngineEvent::ThreadEnd, nullptr);
  me.state = VThread::State::Done;
  // Leaving a read section for good would be a bug in the code under test;
  // the grace-period model must not wait for a finished thread.
  if (me.rcu_depth > 0) touch(&kRcuReaders);
  me.rcu_depth = 0;
  // What ending sets off belongs to the last step: callbacks whose grace
  // period it ends (what they free) and waiters on them (their object).
  run_ready_callbacks();
  for (auto& t : threads_)
    if (t->state == VThread::State::Blocked && t->blocked_on == &pending_) wake(&pending_);
  end_step();
  bool others = false;
  for (size_t i = first_of_run_; i < threads_.size(); i++) others |= threads_[i]->state != VThread::State::Done;
  if (!others) return;  // next_ is -1: the scheduler loop ends
  const int next = choose_next(false);
  if (next < 0) {
    abort_reason_ = "deadlock: every remaining thread is blocked";
    aborting_ = true;
    return;
  }
  hand_baton(next);
}

bool DetEngine::run() {
  g_active.store(this);
  detail::g_det_rcu.store(true);
  detail::g_cmpxchg_may_lose.store(limits_.fail_budget[static_cast<size_t>(FailKind::CmpxchgLoss)] > 0);
  g_injection_oracle.store(&engine_injection);
  g_seamcall_error_oracle.store(&engine_seamcall_error);
  set_sched_handler(&engine_point);
  strategy_.on_run(static_cast<int>(threads_.size() - first_of_run_));
  if (first_of_run_ < threads_.size()) {
    // The caller's own per-thread values, kept while the virtual threads
    // have theirs swapped in.
    VthreadLocals caller;
    caller.save();
    hand_baton(choose_next(false));
    // The scheduler loop: the running thread picks who runs next (next_)
    // and comes back here; -1 means every thread ended.
    while (next_ >= 0 && !aborting_) {
      const int t = std::exchange(next_, -1);
      VThread& th = *threads_[t];
      th.locals.load();
      tl_vthread = t;
      th.fiber->resume();
      tl_vthread = -1;
      th.locals.save();
    }
    caller.load();
  }
  set_sched_handler(nullptr);
  g_injection_oracle.store(nullptr);
  g_seamcall_error_oracle.store(nullptr);
  detail::g_cmpxchg_may_lose.store(false);
  detail::g_det_rcu.store(false);
  g_active.store(nullptr);
  if (aborting_) return false;
  first_of_run_ = threads_.size();
  // No thread is left inside a read section: every grace period has ended.
  for (auto& cb : pending_) {
    note(EngineEvent::RcuCallback, cb.head);
    in_callback_ = true;
    cb.fn(cb.head);
    in_callback_ = false;
    callbacks_run_++;
  }
  pending_.clear();
  return true;
}

void DetEngine::hand_baton(int next) {
  step_ = threads_[next]->resume;
  threads_[next]->last_ran = ++handoffs_;
  next_ = next;
}

void DetEngine::wait_for_baton() {
  threads_[tl_vthread]->fiber->suspend();
  if (aborting_) abort_execution(abort_reason_);
}

int DetEngine::choose_next(bool current_can_continue, bool fair) {
  const int cur = tl_vthread;
  // Reused: this runs at every scheduling point.
  std::vector<int>& options = options_;
  options.clear();
  if (current_can_continue) options.push_back(cur);
  for (size_t i = first_of_run_; i < threads_.size(); i++)
    if (threads_[i]->state == VThread::State::Runnable && static_cast<int>(i) != cur)
      options.push_back(static_cast<int>(i));
  if (options.empty()) return -1;
  // A spinning thread gives way to the one that has waited longest, and that
  // is not a decision: with the lowest index first, two spinners would hand
  // the baton back and forth and starve the thread they wait for (a livelock
  // no real scheduler makes), and a choice at every turn of a retry loop
  // would grow the tree without bound while adding no ordering that a
  // preemption elsewhere does not already give.
  if (fair)
    return *std::min_element(options.begin(), options.end(),
                             [&](int a, int b) { return threads_[a]->last_ran < threads_[b]->last_ran; });
  if (options.size() == 1) return options[0];
  if (strategy_.wants_pending()) {
    pending_steps_.clear();
    for (int t : options) pending_steps_.push_back(threads_[t]->resume);
    strategy_.pending(pending_steps_);
  }
  const uint64_t key = thread_key(thread_decisions_++);
  const uint32_t idx = std::min<uint32_t>(strategy_.pick_thread(decisions_.size(), key, options, current_can_continue),
                                          static_cast<uint32_t>(options.size() - 1));
  const bool preempt = current_can_continue && idx != 0;
  decisions_.push_back({Decision::Kind::Thread, key, idx, static_cast<uint32_t>(options.size()), preempt, cur});
  preemptions_ += preempt;
  return options[std::min<size_t>(idx, options.size() - 1)];
}

void DetEngine::switch_away(bool current_can_continue) {
  const int cur = tl_vthread;
  end_step();
  const int next = choose_next(current_can_continue);
  if (next < 0) abort_execution("deadlock: every thread is blocked");
  if (next == cur) {
    step_ = threads_[cur]->resume;
    return;
  }
  hand_baton(next);
  wait_for_baton();
}

[[noreturn]] void DetEngine::abort_execution(std::string why) {
  if (!aborting_) {
    aborting_ = true;
    abort_reason_ = std::move(why);
  }
  // Park for good: see ~DetEngine.
  next_ = -1;
  for (;;) threads_[tl_vthread]->fiber->suspend();
}

void DetEngine::point(PointKind kind, const void* object) {
  if (aborting_) abort_execution(abort_reason_);
  if (!quarantine_.empty() && (kind == PointKind::SpteRead || kind == PointKind::SpteStore ||
                               kind == PointKind::SpteCmpxchg)) {
    const auto page = reinterpret_cast<uintptr_t>(object) & ~uintptr_t(4095);
    if (quarantined_.contains(page) && violations_.size() < 16)
      violations_.push_back("thread " + threads_[tl_vthread]->name +
                            " accessed an SPTE in a page table freed after its grace period");
  }
  if (++steps_ > limits_.max_steps) abort_execution(step_limit_reason());
  VThread& me = *threads_[tl_vthread];
  resume_at(me.resume, kind, object);
  // Alone (setup, teardown, a thread whose peers are blocked or done): no
  // decision to take, and unless the strategy is following steps, nothing
  // to tell it. Most of an execution's steps are such. step_ is left as it
  // is: the strategy, which would read it, follows no step now (no thread
  // sleeps, no decision waits for its step), and what it is told when it
  // next does is the step after a decision.
  bool alone = true;
  for (size_t i = first_of_run_; i < threads_.size() && alone; i++)
    alone = threads_[i].get() == &me || threads_[i]->state != VThread::State::Runnable;
  if (alone && !strategy_.wants_steps()) return;
  switch_away(true);
}

uint32_t DetEngine::fail_choice(FailKind kind, uint32_t alternatives) {
  if (tl_vthread < 0 || g_active.load() != this || !failures_enabled_ || alternatives < 2) return 0;
  const size_t k = static_cast<size_t>(kind);
  const uint64_t key = fail_key(kind, fail_points_[k]++);
  // Whether it may fire depends on what fired before it, in any thread.
  if (limits_.fail_budget[k] > 0) step_.global = true;
  if (fails_fired_[k] >= limits_.fail_budget[k]) return 0;
  const uint32_t c = std::min(strategy_.pick_fail(decisions_.size(), key, kind, alternatives), alternatives - 1);
  decisions_.push_back({Decision::Kind::Fail, key, c, alternatives, false, tl_vthread});
  fails_fired_[k] += c != 0;
  return c;
}

// Which threads were still at it when the step limit cut the execution
// off: a thread spinning while the others block is a livelock; all of them
// runnable may just be an execution longer than the limit.
std::string DetEngine::step_limit_reason() const {
  std::string running, blocked;
  for (size_t i = first_of_run_; i < threads_.size(); i++) {
    const VThread& t = *threads_[i];
    if (t.state == VThread::State::Done) continue;
    std::string& to = t.state == VThread::State::Blocked ? blocked : running;
    to += (to.empty() ? "" : ", ") + t.name;
  }
  std::string why = "step limit of " + std::to_string(limits_.max_steps) + " scheduling points reached with " +
                    (running.empty() ? std::string("no thread") : running) + " running";
  if (!blocked.empty()) return why + " and " + blocked + " blocked: livelock";
  return why + ": livelock, or an execution longer than the limit";
}

void DetEngine::yield_to_others(const void* object) {
  if (aborting_) abort_execution(abort_reason_);
  if (++steps_ > limits_.max_steps) abort_execution(step_limit_reason());
  const int cur = tl_vthread;
  bool others = false;
  for (size_t i = first_of_run_; i < threads_.size() && !others; i++)
    others = static_cast<int>(i) != cur && threads_[i]->state == VThread::State::Runnable;
  if (!others) return;
  // Out of the runnable set just for this choice, as a waiter would be. The
  // spinner's next step starts over from its retry loop: what it rechecks is
  // named by the points it reaches, as for any step.
  VThread& me = *threads_[cur];
  end_step();
  resume_at(me.resume, PointKind::Yield, object);
  me.state = VThread::State::Blocked;
  me.blocked_on = object;
  const int next = choose_next(false, true);
  me.state = VThread::State::Runnable;
  me.blocked_on = nullptr;
  hand_baton(next);
  wait_for_baton();
}

void DetEngine::block_on(const void* object) {
  note(EngineEvent::Blocked, object);
  VThread& me = *threads_[tl_vthread];
  me.state = VThread::State::Blocked;
  me.blocked_on = object;
  me.resume = StepFootprint{};
  switch_away(false);
}

void DetEngine::block_on_lock(const void* lock, PointKind retry) {
  if (sink_) sink_->on_engine_event(current(), EngineEvent::Blocked, lock);
  touch(lock);
  touch(waiters_of(lock));
  VThread& me = *threads_[tl_vthread];
  me.state = VThread::State::Blocked;
  me.blocked_on = lock;
  resume_at(me.resume, retry, lock);
  switch_away(false);
}

void DetEngine::wake(const void* object) {
  // Whom it wakes waits on `object`: a thread that blocks on it again, or
  // takes the lock it names, is ordered by that object; and who waits for a
  // lock changes (DetEngine::waiters_of).
  touch(object);
  if (has_waiters(object)) touch(waiters_of(object));
  for (size_t i = first_of_run_; i < threads_.size(); i++) {
    VThread& t = *threads_[i];
    if (t.state == VThread::State::Blocked && t.blocked_on == object) {
      t.state = VThread::State::Runnable;
      t.blocked_on = nullptr;
    }
  }
}

bool DetEngine::has_waiters(const void* object) const {
  for (size_t i = first_of_run_; i < threads_.size(); i++)
    if (threads_[i]->state == VThread::State::Blocked && threads_[i]->blocked_on == object) return true;
  return false;
}

void DetEngine::rcu_read_lock() {
  VThread& me = *threads_[tl_vthread];
  if (me.rcu_depth++ == 0) {
    me.rcu_since = ++rcu_clock_;
    note(EngineEvent::RcuReadLock, nullptr);
  }
}

void DetEngine::rcu_read_unlock() {
  VThread& me = *threads_[tl_vthread];
  if (--me.rcu_depth == 0) {
    note(EngineEvent::RcuReadUnlock, nullptr);
    run_ready_callbacks();
    // Only rcu_barrier() waits on the queue, and its wait is global.
    if (has_waiters(&pending_)) wake(&pending_);
  }
}

bool DetEngine::rcu_read_lock_held() const {
  return tl_vthread >= 0 && threads_[tl_vthread]->rcu_depth > 0;
}

void DetEngine::call_rcu(RcuHead* head, RcuCallback fn) {
  pending_.push_back({head, fn, ++rcu_clock_});
  note(EngineEvent::CallRcu, head);
  run_ready_callbacks();
}

// A callback may run once no reader that entered its section before the
// callback was queued is still inside: that reader could hold the object.
void DetEngine::run_ready_callbacks() {
  if (in_callback_) return;
  for (size_t i = 0; i < pending_.size();) {
    bool ready = true;
    for (size_t t = first_of_run_; t < threads_.size() && ready; t++) {
      const VThread& th = *threads_[t];
      if (th.rcu_depth > 0 && th.rcu_since < pending_[i].queued_at) ready = false;
    }
    if (!ready) {
      i++;
      continue;
    }
    const PendingCallback cb = pending_[i];
    pending_.erase(pending_.begin() + static_cast<long>(i));
    note(EngineEvent::RcuCallback, cb.head);
    in_callback_ = true;
    cb.fn(cb.head);
    in_callback_ = false;
    callbacks_run_++;
  }
}

void DetEngine::rcu_barrier() {
  // Whether it must wait depends on the queue and on every reader.
  touch_read(&kRcuQueue);
  touch_read(&kRcuReaders);
  for (;;) {
    run_ready_callbacks();
    if (pending_.empty()) return;
    if (threads_[tl_vthread]->rcu_depth > 0) abort_execution("rcu_barrier() inside an RCU read-side section");
    block_on(&pending_);
  }
}

}  // namespace mirrormmu::sync
