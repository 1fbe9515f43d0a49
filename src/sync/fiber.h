// SPDX-License-Identifier: MIT
// A virtual thread of the deterministic engine as a user-space context on the
// OS thread that runs the engine (Boost.Context): a handoff is two context
// switches of a few nanoseconds each, where OS threads handing a baton took a
// futex wake-up and a trip through the kernel's scheduler.
//
// Only the scheduler (whoever calls resume()) switches into a fiber, and a
// fiber switches only back to it (suspend(), or by returning): the engine
// decides who runs next inside the running fiber and the scheduler loop
// carries it out. ASan and TSan are told of every switch, so that they follow
// each fiber's stack and see the handoff as the synchronisation it is.
#pragma once

#include <boost/context/fiber.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>

namespace mirrormmu::sync {

class Fiber {
 public:
  explicit Fiber(std::function<void()> fn);
  // A fiber that started and did not finish (an aborted execution leaves its
  // threads inside MMU code, holding locks) is never unwound: its context is
  // kept for good, as parked OS threads were.
  ~Fiber();
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  // Scheduler side: runs the fiber until it suspends or returns.
  void resume();
  // Inside the fiber: back to the scheduler, until the next resume().
  void suspend();
  bool done() const { return done_; }

  // Stacks are mapped once with a guard page below them and kept for the
  // next fiber of this OS thread: an exploration creates four or more fibers
  // per execution.
  static constexpr size_t kStackSize = size_t(1) << 20;
  // How many stacks this OS thread has mapped so far.
  static uint64_t stacks_mapped();

 private:
  boost::context::fiber entry(boost::context::fiber&& scheduler);

  std::function<void()> fn_;
  boost::context::fiber self_;       // valid while suspended
  boost::context::fiber scheduler_;  // valid while running
  bool started_ = false;
  bool done_ = false;
  // For the sanitizers: this fiber's stack, the scheduler's, and what each
  // side saves across a switch.
  const void* stack_bottom_ = nullptr;
  size_t stack_size_ = 0;
  const void* sched_bottom_ = nullptr;
  size_t sched_size_ = 0;
  void* tsan_fiber_ = nullptr;
  void* tsan_sched_ = nullptr;
};

}  // namespace mirrormmu::sync
