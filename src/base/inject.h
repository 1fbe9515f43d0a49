// Fault injection: every place that can fail in the real system (a SEAMCALL,
// a cache top-up) asks the injector first. Points are numbered in the order a
// run reaches them, so a test can run a workload once to count the points and
// then once per point with exactly that one failing — the way the kernel's
// fail_* knobs are used, but exhaustive and replayable.
#pragma once

#include <atomic>
#include <cstdint>

namespace mirrormmu {

// HostInterrupt: an interrupt (or NMI) pending on the host while an
// interruptible SEAMCALL runs.
enum class InjectPoint : uint8_t { Seamcall, CacheTopup, HostInterrupt };
enum class Injection : uint8_t { None, Busy, Error, NoMem };

// While an execution engine steers failures (the deterministic explorer), it
// answers every injectable point instead of the armed ordinal.
using InjectionOracle = Injection (*)(InjectPoint);
inline std::atomic<InjectionOracle> g_injection_oracle{nullptr};

class FaultInjector {
 public:
  // Fail the `ordinal`-th point (1-based) of kind `point` with `what`.
  void arm(InjectPoint point, uint64_t ordinal, Injection what) {
    armed_point_ = point;
    armed_ordinal_ = ordinal;
    armed_what_ = what;
  }
  void disarm() { armed_ordinal_ = 0; }

  // Called at every injectable point; cheap when nothing is armed.
  // `contended` says whether the real system can fail here (a SEAMCALL
  // that meets vCPUs or other host calls); only those points are offered to
  // an engine's oracle, while armed ordinals cover every point.
  Injection check(InjectPoint point, bool contended = true) {
    const uint64_t n = seen_[static_cast<int>(point)].fetch_add(1, std::memory_order_relaxed) + 1;
    InjectionOracle o = contended ? g_injection_oracle.load(std::memory_order_relaxed) : nullptr;
    if (o != nullptr) [[unlikely]] {
      const Injection i = o(point);
      if (i != Injection::None) fired_.fetch_add(1, std::memory_order_relaxed);
      return i;
    }
    if (armed_ordinal_ != 0 && point == armed_point_ && n == armed_ordinal_) [[unlikely]] {
      fired_.fetch_add(1, std::memory_order_relaxed);
      return armed_what_;
    }
    return Injection::None;
  }

  uint64_t seen(InjectPoint p) const { return seen_[static_cast<int>(p)].load(std::memory_order_relaxed); }
  uint64_t fired() const { return fired_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> seen_[3] = {0, 0, 0};
  std::atomic<uint64_t> fired_{0};
  InjectPoint armed_point_ = InjectPoint::Seamcall;
  uint64_t armed_ordinal_ = 0;
  Injection armed_what_ = Injection::None;
};

}  // namespace mirrormmu
