// SPDX-License-Identifier: MIT
// The checker: an observer that counts what happens (SPTE transitions, hook
// calls, SEAMCALLs, bug sites) and, on request, asserts every invariant of
// the mirror, the S-EPT and host memory. It never changes what it watches.
#pragma once

#include <array>
#include <memory>
#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <mutex>
#include <unordered_set>
#include <vector>

#include "base/thread_counters.h"
#include "check/touched.h"
#include "check/transitions.h"
#include "mmu/observer.h"
#include "tdx/module.h"
#include "vm/vm.h"

namespace mirrormmu {

struct Violation {
  std::string invariant;  // e.g. "mirror_sept_leaf"
  std::string detail;
  uint64_t op_index = 0;  // the VM-level operation after which it was seen
  std::string op;
};

// How much of the state a check after an operation looks at.
//  Full:        every invariant over the whole guest, every time.
//  Incremental: the ranges the operation changed (recorded as it ran: SPTE
//               changes, SEAMCALLs, memslot and attribute changes) plus the
//               global books (page stats, pool, TLBs, bug sites); a full
//               pass when the changes since the last one outgrow what it
//               walked, and at the end (check_full()).
//  Final:       only the global books after each operation; the full pass
//               at the end.
enum class CheckMode : uint8_t { Full, Incremental, Final };
const char* check_mode_name(CheckMode m);

struct CheckerOptions {
  CheckMode mode = CheckMode::Full;
  // Incremental: a full pass every this many checks as well (0: only when
  // the incremental passes since the last one saw more entries than it did).
  uint64_t full_every = 0;
  // A KVM_BUG_ON/TDX_BUG_ON/BUG/WARN/lockdep hit is a failure, unless the
  // run injects faults on purpose.
  bool bug_sites_are_failures = true;
  // Stop recording after this many (the first ones tell the story).
  size_t max_violations = 100;
};

class Checker final : public MmuObserver, public tdx::SeamcallObserver, public BugObserver {
 public:
  explicit Checker(Vm& vm, CheckerOptions opts = {});
  ~Checker() override;
  Checker(const Checker&) = delete;
  Checker& operator=(const Checker&) = delete;

  // Runs every invariant after a VM-level operation; returns how many new
  // violations were found.
  size_t check(std::string_view after_op);
  // A full pass whatever the mode (the end of a run, a test's "now").
  size_t check_full(std::string_view after_op);
  CheckMode mode() const { return opts_.mode; }
  // After Vm::destroy(): everything back in the pool, nothing owned twice.
  size_t check_end_of_life();

  // A failure found by a workload's own check (e.g. a wrong dirty bitmap).
  void report(std::string invariant, std::string detail) { fail(std::move(invariant), std::move(detail)); }
  // A violation a workload sees in the middle of its operation `during`
  // (the next one to be checked), reported as found there.
  void report_during(std::string_view during, std::string invariant, std::string detail) {
    if (violations_.size() < opts_.max_violations)
      violations_.push_back({std::move(invariant), std::move(detail), op_index_ + 1, std::string(during)});
  }
  const std::vector<Violation>& violations() const { return violations_; }
  // The violations, one per line (for test failure messages).
  std::string describe() const;
  bool ok() const { return violations_.empty(); }
  uint64_t checks_run() const { return checks_run_; }
  uint64_t full_checks() const { return full_checks_; }
  // Entries (leaves and tables) the incremental passes looked at.
  uint64_t entries_checked() const { return entries_checked_; }
  uint64_t invariants_checked() const { return invariants_checked_; }
  uint64_t ops() const { return op_index_; }
  const TransitionCounts& transitions() const { return transitions_; }
  // Per row of the transition table: attempts, refusals, sites charged to it.
  TransitionRows transition_rows() const;
  uint64_t hook_calls(HookKind k) const { return hooks_.sum(static_cast<size_t>(k)); }
  uint64_t hook_failures(HookKind k) const { return hook_failures_[static_cast<size_t>(k)].load(); }
  uint64_t tlb_flushes() const { return flushes_.load(); }
  uint64_t pages_leaked() const { return pages_leaked_; }
  uint64_t pages_leaked_on_purpose() const { return pages_leaked_on_purpose_; }

  // Observer interfaces.
  void on_spte_changed(const SpteChange& c) override;
  void on_external_hook(HookKind kind, Gfn gfn, PgLevel level, int ret) override;
  void on_tlb_flush(Gfn, uint64_t) override { flushes_.fetch_add(1, std::memory_order_relaxed); }
  void on_seamcall(tdx::Leaf leaf, uint64_t gpa, int tdx_level, tdx::Status status) override;
  void on_gfn_range_changed(Gfn start, uint64_t npages) override;
  void on_bug_site(Site s, bool vm_bugged_now) override;
  void on_spte_change_result(const SpteChange& c, int ret) override;

 private:
  class Pass;
  struct Scratch;
  // Entries whose first gfn lies in one 2M region, as a pass last counted
  // them: the page stats are checked against the sum without a full walk.
  struct RegionCount {
    int32_t pages[kMaxHugeLevel] = {};
    int32_t tables = 0;
  };
  size_t run_check(std::string_view after_op, bool full);
  std::vector<TouchedRange> all_regions() const;
  void fail(std::string invariant, std::string detail);
  bool incremental() const { return opts_.mode == CheckMode::Incremental; }
  // Frames that left the guest since the last check, with cache lines
  // never written back. False: more left than were listed, nothing looked at.
  bool check_departed_frames();
  void report_pool_violations();
  void report_new_bug_sites();
  // What the CPUs saw: the direct root's TLBs (Vm::hw()) and the TDX
  // module's private ones, each reported once.
  void report_hw_violations();
  size_t row_of(const SpteChange& c) const;

  Vm& vm_;
  CheckerOptions opts_;
  std::vector<Violation> violations_;
  // on_spte_changed() runs on vCPU threads; a promotion is recorded there.
  std::mutex promotion_mu_;
  TransitionCounts transitions_;
  ThreadCounters<TransitionCounts::kClasses> attempts_;  // one per SPTE change: no locked add
  mutable std::mutex rows_mu_;  // refusals and sites are rare: one lock is enough
  std::map<size_t, std::map<int, uint64_t>> refused_;
  std::map<size_t, std::map<Site, uint64_t>> row_sites_;
  ThreadCounters<kHookKindCount> hooks_;  // one per external hook call
  std::array<std::atomic<uint64_t>, kHookKindCount> hook_failures_{};
  std::atomic<uint64_t> flushes_{0};
  std::array<uint64_t, kSiteCount> bug_hits_seen_{};
  uint64_t op_index_ = 0;
  std::string op_;
  uint64_t checks_run_ = 0;
  uint64_t invariants_checked_ = 0;
  uint64_t pages_leaked_ = 0;
  uint64_t pages_leaked_on_purpose_ = 0;
  size_t pool_violations_seen_ = 0;
  bool hw_reported_ = false, private_tlb_reported_ = false, vcpu_mutex_reported_ = false;
  std::unordered_set<uint64_t> cache_reported_;  // frames already reported, once each
  std::unique_ptr<Scratch> scratch_;
  TouchedRanges touched_;
  std::map<uint64_t, RegionCount> region_counts_;  // by 2M region index
  int64_t counted_pages_[kMaxHugeLevel] = {};
  int64_t counted_tables_ = 0;
  uint64_t entries_at_full_ = 0;   // leaves and tables the last full pass saw
  uint64_t incremental_since_full_ = 0;  // entries the incremental passes since saw
  uint64_t checks_since_full_ = 0;
  uint64_t full_checks_ = 0;
  uint64_t entries_checked_ = 0;
  bool had_full_ = false;
};

}  // namespace mirrormmu
