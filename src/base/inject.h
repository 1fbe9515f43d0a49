// SPDX-License-Identifier: MIT
// Fault injection: every place that can fail in the real system (a SEAMCALL,
// a cache top-up) asks the injector first. Points are numbered in the order a
// run reaches them, so a test can run a workload once to count the points and
// then once per point with exactly that one failing — the way the kernel's
// fail_* knobs are used, but exhaustive and replayable.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <utility>
#include <vector>

namespace mirrormmu {

// CacheTopup: a vCPU's MMU cache top-up before a fault. SplitTable: the
// table allocated for a huge-page split (mmu_lock dropped). PamtPair: a
// Dynamic PAMT page-pair top-up. HostInterrupt: an interrupt (or NMI)
// pending on the host while an interruptible SEAMCALL runs.
enum class InjectPoint : uint8_t { Seamcall, CacheTopup, HostInterrupt, SplitTable, PamtPair, kCount };
inline constexpr size_t kInjectPointCount = static_cast<size_t>(InjectPoint::kCount);
enum class Injection : uint8_t { None, Busy, Error, NoMem };

// While an execution engine steers failures (the deterministic explorer), it
// answers every injectable point instead of the armed ordinal. `retry_path`:
// a SEAMCALL KVM retries after kicking every vCPU out, where it assumes BUSY
// cannot happen (only offered when the user opts in).
using InjectionOracle = Injection (*)(InjectPoint, bool retry_path);
inline std::atomic<InjectionOracle> g_injection_oracle{nullptr};
// The same engine choosing one of `alternatives` error statuses a SEAMCALL
// leaf can return (0: none, run the leaf).
using SeamcallErrorOracle = uint32_t (*)(uint32_t alternatives);
inline std::atomic<SeamcallErrorOracle> g_seamcall_error_oracle{nullptr};

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
  // `contended` says whether a SEAMCALL can meet vCPUs or other host calls
  // (only those are offered BUSY by an engine's oracle); armed ordinals
  // cover every point. `retry_path`: see InjectionOracle.
  Injection check(InjectPoint point, bool contended = true, bool retry_path = false) {
    const uint64_t n = seen_[static_cast<int>(point)].fetch_add(1, std::memory_order_relaxed) + 1;
    for (auto& [r, fired] : alloc_rules_)
      if (r.point == point && r.ordinal == n) [[unlikely]] {
        std::atomic_ref<bool>(fired).store(true, std::memory_order_relaxed);
        fired_.fetch_add(1, std::memory_order_relaxed);
        return Injection::NoMem;
      }
    InjectionOracle o = contended ? g_injection_oracle.load(std::memory_order_relaxed) : nullptr;
    if (o != nullptr) [[unlikely]] {
      const Injection i = o(point, retry_path);
      if (i != Injection::None) fired_.fetch_add(1, std::memory_order_relaxed);
      return i;
    }
    if (armed_ordinal_ != 0 && point == armed_point_ && n == armed_ordinal_) [[unlikely]] {
      fired_.fetch_add(1, std::memory_order_relaxed);
      return armed_what_;
    }
    return Injection::None;
  }

  // A SEAMCALL leaf (its tdx::Leaf number) failing at its `ordinal`-th call
  // with `status` instead of running: run's --inject LEAF#N=STATUS.
  struct SeamcallRule {
    uint32_t leaf;
    uint64_t ordinal;
    uint64_t status;
  };
  void add_seamcall_rule(SeamcallRule r) { rules_.push_back({r, false}); }
  // Called on entry to every host SEAMCALL (under the module's lock): the
  // status to return without running it, or 0.
  uint64_t seamcall_rule(uint32_t leaf) {
    if (rules_.empty() || leaf >= kMaxLeaves) return 0;
    const uint64_t n = leaf_calls_[leaf].fetch_add(1, std::memory_order_relaxed) + 1;
    for (auto& [r, fired] : rules_)
      if (r.leaf == leaf && r.ordinal == n) {
        // PAGE.AUGs on several threads ask at once.
        std::atomic_ref<bool>(fired).store(true, std::memory_order_relaxed);
        fired_.fetch_add(1, std::memory_order_relaxed);
        return r.status;
      }
    return 0;
  }
  // An engine's choice among a leaf's `alternatives - 1` error statuses, or 0.
  uint32_t seamcall_error(uint32_t alternatives) {
    SeamcallErrorOracle o = g_seamcall_error_oracle.load(std::memory_order_relaxed);
    if (o == nullptr || alternatives < 2) [[likely]] return 0;
    const uint32_t i = o(alternatives);
    if (i) fired_.fetch_add(1, std::memory_order_relaxed);
    return i;
  }
  // The `ordinal`-th allocation at `point` fails: run's --inject-alloc.
  struct AllocRule {
    InjectPoint point;
    uint64_t ordinal;
  };
  void add_alloc_rule(AllocRule r) { alloc_rules_.push_back({r, false}); }
  bool alloc_rule_fired(size_t i) const {
    return std::atomic_ref<bool>(const_cast<bool&>(alloc_rules_[i].second)).load(std::memory_order_relaxed);
  }

  bool seamcall_rule_fired(size_t i) const {
    return std::atomic_ref<bool>(const_cast<bool&>(rules_[i].second)).load(std::memory_order_relaxed);
  }
  uint64_t leaf_calls(uint32_t leaf) const {
    return leaf < kMaxLeaves ? leaf_calls_[leaf].load(std::memory_order_relaxed) : 0;
  }

  uint64_t seen(InjectPoint p) const { return seen_[static_cast<int>(p)].load(std::memory_order_relaxed); }
  uint64_t fired() const { return fired_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> seen_[kInjectPointCount] = {};
  std::atomic<uint64_t> fired_{0};
  static constexpr uint32_t kMaxLeaves = 64;
  std::vector<std::pair<SeamcallRule, bool>> rules_;
  std::vector<std::pair<AllocRule, bool>> alloc_rules_;
  std::array<std::atomic<uint64_t>, kMaxLeaves> leaf_calls_{};
  InjectPoint armed_point_ = InjectPoint::Seamcall;
  uint64_t armed_ordinal_ = 0;
  Injection armed_what_ = Injection::None;
};

}  // namespace mirrormmu
