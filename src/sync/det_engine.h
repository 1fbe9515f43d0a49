// SPDX-License-Identifier: MIT
// The deterministic engine: virtual threads that run one at a time and switch
// only at scheduling points, so one interleaving of the same MMU, TDX glue
// and module code can be chosen, recorded and replayed exactly.
//
// Each virtual thread is a fiber on the OS thread that called run(); at every
// scheduling point the running thread asks the strategy who runs next and
// hands the baton over (sync/fiber.h). Locks (mmu_lock) block by leaving the runnable set; RCU read
// sections and grace periods are modelled, so call_rcu callbacks run at a
// deterministic point, only after every reader that could see the object
// has left its section. Failure points (BUSY from a SEAMCALL, a failed cache
// top-up, a lost cmpxchg, a forced yield) are decisions too.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sync/page_set.h"
#include "sync/rcu.h"
#include "sync/sched.h"

namespace mirrormmu::sync {

// Failure points the strategy may fire, each kind with its own budget.
// SeamcallBusy: BUSY where a SEAMCALL can meet vCPUs or other host calls.
// SeamcallError: any other status the leaf can return (a multi-way choice).
// RetryBusy: BUSY on the retry after kicking every vCPU out, which KVM
// assumes cannot fail. The allocation kinds fail one allocation each; a
// HostInterrupt is pending while an interruptible SEAMCALL runs.
enum class FailKind : uint8_t {
  SeamcallBusy, TopupNoMem, CmpxchgLoss, ForcedYield,
  SeamcallError, RetryBusy, SplitTableNoMem, PamtPairNoMem, HostInterrupt,
  kCount
};
inline constexpr size_t kFailKindCount = static_cast<size_t>(FailKind::kCount);
const char* fail_kind_name(FailKind k);
// One letter per kind, for the keys in schedule strings: b t c y e r s p i.
char fail_kind_letter(FailKind k);

// Decisions are named by what they are, not by their place in the run: the
// n-th thread choice, or the n-th failure point of one kind (counted whether
// or not its budget lets it fire). A schedule shrunk to smaller budgets or
// fewer failures still names the same decisions.
inline constexpr uint64_t thread_key(uint64_t ordinal) { return ordinal; }
inline constexpr uint64_t fail_key(FailKind k, uint64_t ordinal) {
  return (static_cast<uint64_t>(k) + 1) << 56 | ordinal;
}
inline constexpr bool is_fail_key(uint64_t key) { return (key >> 56) != 0; }
inline constexpr FailKind key_fail_kind(uint64_t key) { return static_cast<FailKind>((key >> 56) - 1); }
inline constexpr uint64_t key_ordinal(uint64_t key) { return key & ((1ull << 56) - 1); }

// One decision taken during an execution.
struct Decision {
  enum class Kind : uint8_t { Thread, Fail };
  Kind kind;
  uint64_t key;
  uint32_t chosen;        // index into the alternatives; 0 is the default
  uint32_t alternatives;  // > 1, or it would not be a decision
  bool preemption;        // chosen thread != a still-runnable current thread
  int thread;             // the virtual thread running when it was taken (-1: none yet)
};

// What the engine itself can tell a trace: thread lifecycle and locks.
enum class EngineEvent : uint8_t {
  ThreadStart, ThreadEnd, LockRead, LockWrite, UnlockRead, UnlockWrite, Blocked,
  RcuReadLock, RcuReadUnlock,  // the outermost read-side section only
  CallRcu,                     // object: the rcu_head queued
  RcuCallback,                 // its grace period is over: the callback runs
};
const char* engine_event_name(EngineEvent e);

class EngineSink {
 public:
  virtual ~EngineSink() = default;
  virtual void on_engine_event(int thread, EngineEvent e, const void* object) = 0;
};

// What one step of a virtual thread (from the scheduling point it resumed at
// to the next one) did, as far as the engine can tell: the point's own kind
// and object, the objects it said it touched (sched_touch) or only read
// (touch_read, the SPTE's page table), and whether it did anything the
// engine cannot attribute to an object (an injected failure, a wait on a
// condition no point names, more objects than it can list), which makes it
// "global".
// Partial-order reduction swaps two steps only if neither is global and they
// share no object that one of them writes, or that one of them adds to
// while the other reads it.
struct StepFootprint {
  static constexpr int kMaxTouched = 16;
  PointKind kind = PointKind::Yield;
  bool global = true;
  // The point only reads its object: an SPTE read, a yield, a shared
  // acquisition of mmu_lock, entering an RCU section, the step after a
  // release, a new thread's first step.
  bool reads_only = false;
  uint8_t ntouched = 0;
  const void* object = nullptr;
  // An SPTE access reads the page table it is in as well: freeing that
  // table (DetEngine::quarantine) writes the whole page.
  const void* page = nullptr;
  // One more object the step only read (DetEngine::touch_read).
  const void* also_read = nullptr;
  // An object the step changed only by an update that commutes with every
  // other such update of it (DetEngine::touch_add): a reader count going up
  // or down. Two read_lock()s, or two rcu_read_lock()s, are independent;
  // either is dependent with whatever reads or writes the count.
  const void* added = nullptr;
  const void* touched[kMaxTouched] = {};
};
bool dependent(const StepFootprint& a, const StepFootprint& b);

class DetStrategy {
 public:
  virtual ~DetStrategy() = default;
  // The running thread finished a step (it reached a scheduling point,
  // blocked, yielded or ended). Called before the decision that follows it.
  virtual void on_step(int /*thread*/, const StepFootprint& /*step*/) {}
  // A run begins (DetEngine::run()) with `threads` virtual threads spawned
  // for it; every step of an earlier run happens before its steps.
  virtual void on_run(int /*threads*/) {}
  // Whether on_step() matters now; if not, a thread running alone passes
  // its scheduling points without calling the strategy at all.
  virtual bool wants_steps() const { return false; }
  // Before a thread choice: the step each option would take next, as far as
  // its scheduling point tells (kind and object; what it will touch beyond
  // that is not known before it runs). Objects are this execution's
  // addresses: they mean nothing in another execution.
  virtual bool wants_pending() const { return false; }
  virtual void pending(const std::vector<StepFootprint>& /*steps*/) {}
  // `seq` numbers the decisions of one execution in order; `key` names
  // the decision stably (see thread_key). Thread choice: `options` lists
  // runnable thread ids, the default first (the current thread when it can
  // go on). Returns an index into options.
  virtual uint32_t pick_thread(uint64_t seq, uint64_t key, const std::vector<int>& options, bool current_first) = 0;
  // Failure `k` here: 0 for none, else one of alternatives 1..alternatives-1
  // (2 alternatives for a plain yes/no). Only asked while its budget lasts.
  virtual uint32_t pick_fail(uint64_t seq, uint64_t key, FailKind k, uint32_t alternatives) = 0;
};

struct DetLimits {
  uint64_t max_steps = 2'000'000;                // scheduling points per execution
  bool fast_forward = true;                      // see fast_forward()
  uint32_t fail_budget[kFailKindCount] = {};
};

class DetEngine {
 public:
  DetEngine(DetStrategy& strategy, DetLimits limits);
  ~DetEngine();
  DetEngine(const DetEngine&) = delete;
  DetEngine& operator=(const DetEngine&) = delete;

  // Adds a virtual thread for the next run().
  int spawn(std::string name, std::function<void()> fn);
  // Runs every spawned thread to completion (or to a deadlock / step limit).
  // Returns false if the run was aborted; abort_reason() says why.
  bool run();
  const std::string& abort_reason() const { return abort_reason_; }

  // ---- hooks used by sync/ primitives while the engine is active ---------
  void point(PointKind kind, const void* object);
  bool fail_point(FailKind kind) { return fail_choice(kind, 2) != 0; }
  uint32_t fail_choice(FailKind kind, uint32_t alternatives);
  // The waiter rechecks a condition no point names: blocking and the
  // recheck count as global.
  void block_on(const void* object);
  // `lock`'s state is all the thread reads before its next scheduling
  // point, blocking and retrying included; the block and the retry (a step
  // that resumes at a `retry` point) are ordered by that lock alone.
  void block_on_lock(const void* lock, PointKind retry);
  // The current thread gives way to any other runnable one (not a
  // preemption); it continues only when it is alone.
  void yield_to_others(const void* object);   // current thread waits for wake(object)
  void wake(const void* object);
  // The running step changes shared state named by `object` (sched_touch).
  void touch(const void* object);
  // The running step reads shared state named by `object`: ordered against
  // steps that change it, not against other readers.
  void touch_read(const void* object);
  // The running step changes `object` only by an update that commutes with
  // every other touch_add of it (StepFootprint::added).
  void touch_add(const void* object);
  // The object that names who waits for `lock` (block_on_lock):
  // asking whether the lock is contended reads it, blocking and waking
  // write it.
  static const void* waiters_of(const void* lock) {
    return reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(lock) | 2);
  }
  // The object that names how many readers hold `lock`: taking and dropping
  // it shared add to it, a writer reads it.
  static const void* readers_of(const void* lock) {
    return reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(lock) | 3);
  }
  // A walk may pass `n` SPTE reads in the page table at `table` without
  // their scheduling points, if each of them would have been a point with
  // nothing to decide and nothing to report: every other thread of this run
  // has ended (none can be woken, so none can take a step in between), no
  // forced yield can be injected, the strategy follows no steps, and the
  // table is not quarantined (a read there is a use after free to report).
  // The steps are counted as if taken, so step numbers, traces and the step
  // limit stay those of the point-by-point walk. Returns whether it may.
  bool fast_forward(const void* table, uint64_t n);
  // The same in two halves, for a walk that must not scan ahead at every
  // step when it may not skip (that was quadratic per table): how many
  // points it may pass at `table` (0: none), then passing `n` of them.
  uint64_t fast_forward_limit(const void* table) const;
  void fast_forward_take(uint64_t n);
  bool has_waiters(const void* object) const;
  void rcu_read_lock();
  void rcu_read_unlock();
  bool rcu_read_lock_held() const;
  void call_rcu(RcuHead* head, RcuCallback fn);
  void rcu_barrier();
  void set_sink(EngineSink* s) { sink_ = s; }
  // Failure points fire only while enabled (the racing part of a scenario,
  // not its setup or teardown).
  void set_failures_enabled(bool on) { failures_enabled_ = on; }
  void note(EngineEvent e, const void* object);
  // Page-table memory freed while the engine runs is quarantined instead of
  // returned to the allocator; any later SPTE access into it is recorded as
  // a use after the grace period (ASan would report it too, but only in
  // sanitizer builds and without the interleaving that caused it).
  void quarantine(void* page);
  const std::vector<std::string>& violations() const { return violations_; }
  // True while the running thread executes an RCU callback.
  bool in_rcu_callback() const { return in_callback_; }

  int current() const;                 // virtual thread id, -1 outside
  const std::string& thread_name(int id) const;
  int thread_count() const { return static_cast<int>(threads_.size()); }
  uint64_t steps() const { return steps_; }
  uint64_t steps_fast_forwarded() const { return fast_forwarded_; }
  uint64_t decisions() const { return decisions_.size(); }
  const std::vector<Decision>& decision_log() const { return decisions_; }
  uint64_t preemptions() const { return preemptions_; }
  uint32_t fails_fired(FailKind k) const { return fails_fired_[static_cast<size_t>(k)]; }
  uint64_t rcu_callbacks_run() const { return callbacks_run_; }

  // The engine of this process while one is installed, else null.
  static DetEngine* active() { return g_active.load(std::memory_order_relaxed); }

 private:
  struct VThread;
  struct PendingCallback {
    RcuHead* head;
    RcuCallback fn;
    uint64_t queued_at;
  };
  void thread_main(int id, const std::function<void()>& fn);
  void wait_for_baton();
  void end_step();
  void switch_away(bool current_can_continue);
  void hand_baton(int next);
  int choose_next(bool current_can_continue, bool fair = false);
  void run_ready_callbacks();
  [[noreturn]] void abort_execution(std::string why);
  std::string step_limit_reason() const;

  static std::atomic<DetEngine*> g_active;

  DetStrategy& strategy_;
  EngineSink* sink_ = nullptr;
  bool failures_enabled_ = true;
  DetLimits limits_;
  std::vector<std::unique_ptr<VThread>> threads_;
  StepFootprint step_;  // of the running thread's current step
  std::vector<StepFootprint> pending_steps_;
  size_t first_of_run_ = 0;
  int next_ = -1;  // the thread the scheduler loop resumes next
  uint64_t steps_ = 0;
  uint64_t fast_forwarded_ = 0;
  std::vector<Decision> decisions_;
  uint64_t preemptions_ = 0;
  uint64_t handoffs_ = 0;
  uint32_t fails_fired_[kFailKindCount] = {};
  uint64_t thread_decisions_ = 0;
  uint64_t fail_points_[kFailKindCount] = {};
  std::vector<PendingCallback> pending_;
  uint64_t rcu_clock_ = 0;
  uint64_t callbacks_run_ = 0;
  bool in_callback_ = false;
  bool aborting_ = false;
  std::vector<void*> quarantine_;
  PageSet quarantined_;  // the same pages, to look up at every SPTE access
  std::vector<int> options_;
  std::vector<std::string> violations_;
  std::string abort_reason_;
};

}  // namespace mirrormmu::sync
