// SPDX-License-Identifier: MIT
// The races of one execution, for dynamic partial-order reduction
// (Flanagan and Godefroid, POPL 2005). Steps arrive in the order they ran,
// each with the footprint the engine recorded (sync::StepFootprint). Two
// steps of different threads race when they are dependent (sync::dependent)
// and neither happens before the other through the rest of the execution:
// then running the later one first is an execution not equivalent to this
// one, and DFS must try it. Happens-before is kept with vector clocks per
// thread and, per object, the clocks of its last writes and of the reads
// since (as a race detector does), so a step costs a few lookups, not a scan
// of the execution.
//
// The check is conservative in one direction only: a pair ordered through a
// third thread's step that is dependent with both may still be reported (one
// more branch to explore), a real race is never missed.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "sync/det_engine.h"

namespace mirrormmu::explore {

class RaceTracker {
 public:
  static constexpr int kMaxThreads = 8;

  // Where a step came from in the DFS tree: the decision that chose it
  // (-1: its thread was the only one that could run) and the decision that
  // switched its thread in for the run of steps it belongs to (-1: none).
  struct Origin {
    int32_t node = -1;
    int32_t switched_in = -1;
  };
  // An earlier step `earlier` of another thread races with the step of
  // `thread` just recorded.
  struct Race {
    Origin earlier;
    int thread;
  };

  void reset();
  // A new run of the engine: its threads start after every step so far.
  void barrier();
  // Records the next step; appends its races to `out`. A thread id at or
  // above kMaxThreads makes the tracker give up for the rest of the
  // execution (overflowed()): the caller must then explore everything.
  void step(int thread, const sync::StepFootprint& f, Origin origin, std::vector<Race>& out);
  bool overflowed() const { return overflowed_; }

 private:
  using Clock = std::array<uint32_t, kMaxThreads>;
  struct Access {
    uint32_t index = 0;  // the thread's step number, from 1; 0: none
    Origin origin;
  };
  // Per object, what a race detector keeps: the last write (earlier ones
  // happen before it) and the reads and the commutative updates since
  // (sync::StepFootprint::added), each with its thread's clock joined in. A
  // read races with the updates, an update with the reads, a write with all.
  struct Object {
    const void* key = nullptr;
    uint32_t generation = 0;
    int8_t writer = -1;  // thread of the last write; -1: none yet
    Access write;
    Clock write_clock{};
    Clock read_clock{};  // join of the clocks of the reads since the write
    Clock add_clock{};   // and of the updates
    std::array<Access, kMaxThreads> reads{};
    std::array<Access, kMaxThreads> adds{};
  };
  enum class Kind : uint8_t { Read, Add, Write };
  Object& object(const void* key);
  void grow();
  static void join(Clock& a, const Clock& b) {
    for (int i = 0; i < kMaxThreads; i++) a[i] = a[i] > b[i] ? a[i] : b[i];
  }

  std::array<Clock, kMaxThreads> clock_{};
  Clock globals_{};  // join of the clocks of global steps
  Clock start_{};    // what a thread's first step knows (barrier())
  std::array<bool, kMaxThreads> started_{};
  int nthreads_ = 0;  // one more than the highest thread id seen
  std::array<Access, kMaxThreads> last_step_{}, last_global_{};
  // Open addressing, reused from one execution to the next: an entry is
  // live only in the current generation.
  std::vector<Object> table_;
  size_t live_ = 0;
  uint32_t generation_ = 1;
  bool overflowed_ = false;
};

}  // namespace mirrormmu::explore
