// SPDX-License-Identifier: MIT
// Workloads: sequences of VM-level operations modelled on the KVM selftests,
// each followed by a full invariant check. A run is fully determined by its
// config (seed included), so any failure replays from one command line.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "check/checker.h"
#include "check/event_trace.h"
#include "explore/execution.h"
#include "vm/vm.h"

namespace mirrormmu {

// The selftests' own flags (memstress and the tests built on it), for the
// workloads modelled on them; td-life ignores them.
struct SelftestParams {
  uint64_t bytes_per_vcpu = 1ull << 30;  // -b: memory each vCPU touches
  std::string backing = "anonymous";     // -s: decides the page size the guest maps
  bool overlap = false;                  // -o: every vCPU touches all of it
  int iterations = 2;                    // -i (dirty-log-perf)
  int slots = 1;                         // -x (dirty-log-perf), -m (private-mem-conversions)
  int write_percent = 100;               // -w, or 100/N from -f N (dirty-log-perf)
  bool random_access = false;            // -a (dirty-log-perf)
  bool manual_protect = true;            // cleared by -g (dirty-log-perf)
  bool keep_running = false;             // -e: vCPUs run while logging is disabled
  uint64_t max_mem = 128ull << 30;       // -m (mmu-stress): guest test memory
  uint64_t slot_size = 2ull << 30;       // -s (mmu-stress): each memslot, all aliasing one memfd
  bool hugetlb = false;                  // -H (mmu-stress): the memfd is MFD_HUGETLB (2M)
};

struct WorkloadConfig {
  std::string name = "td-life";
  SelftestParams st;
  bool print_figures = false;  // print each figure line as it is measured (the CLI)
  uint64_t seed = 1;
  double gib = 0.5;           // guest RAM of the TD
  int vcpus = 2;
  std::string design = kDefaultDesign;
  bool huge_pages = false;        // 2M private mappings (the design must split them)
  bool eager_page_split = true;
  bool dynamic_pamt = false;
  bool enhanced_demote_interruptibility = true;  // the module is 1.5.28 or later
  ExternalSptPolicy external_spt_policy = ExternalSptPolicy::KvmCache;
  SplitAlloc split_alloc = SplitAlloc::Prefilled;
  WhatIf what_if;
  int ept_levels = 4;
  unsigned resched_interval = 0;  // force yields in long walks (0: off)
  // Native engine: vCPUs on their own threads, faulting concurrently under
  // the shared mmu_lock while this thread runs exclusive operations and
  // checks. Off: every operation in turn on one thread (exactly replayable).
  bool threads = true;
  bool check = true;              // run the invariants after every operation (false: --check off)
  CheckMode check_mode = CheckMode::Incremental;
  uint64_t full_check_every = 0;  // incremental: also a full pass every N checks (0: by volume)
  FaultInjector* inject = nullptr;
  // --inject LEAF#N=STATUS: SEAMCALLs failing at a given call, applied
  // through an injector of the run's own when `inject` is null. `spec` is
  // the text as given, for the replay line.
  struct SeamcallInjection {
    FaultInjector::SeamcallRule rule;
    std::string spec;
  };
  std::vector<SeamcallInjection> seamcall_injections;
  // --inject-alloc SITE#N: the N-th allocation at a site fails.
  struct AllocInjection {
    FaultInjector::AllocRule rule;
    std::string spec;
  };
  std::vector<AllocInjection> alloc_injections;
  int64_t pool_fail_after = -1;   // host allocations fail after this many (-1: never)
  bool bug_sites_are_failures = true;
  std::string trace_path;  // --trace FILE: every MMU/TDX event, trace-cmd layout
};

// A chart of what a workload measured (--plot DIR draws it): named series of
// (x, y) points.
struct Chart {
  std::string name;  // file name, without extension
  std::string title, xlabel, ylabel;
  bool bars = false;  // one bar per x instead of lines
  std::vector<std::pair<double, std::string>> xtics;  // names for x values (bars of named rows)
  struct Series {
    std::string label;
    std::vector<std::pair<double, double>> points;
  };
  std::vector<Series> series;
  bool log_y = false;  // for figures spanning decades (the kernels against the floor)
  // The point (x, y) of series `label`, the series made on first use.
  void add(const std::string& label, double x, double y);
};

struct WorkloadResult {
  uint64_t ops = 0;
  uint64_t concurrent_checks = 0;  // checks taken while vCPU threads ran
  double seconds = 0;
  bool ok = true;
  int exit_code = 0;  // 0 clean, 1 invariant broken
  std::string error;  // set when the workload itself could not run (bad config)
  uint64_t trace_events = 0;  // lines written to --trace FILE
  std::vector<std::string> figures;  // the workload's own printed lines
  std::vector<Chart> charts;         // what --plot draws
  // What the workload's own checks saw with no checker to report to
  // (--check off): each one fails the run.
  std::vector<Violation> failures;
};

// Runs ops on a VM and checks after each; stops at the first failure.
class Driver {
 public:
  // With `tolerate_errors`, an operation returning an error is not itself a
  // failure (fault-injection runs expect -ENOMEM, -EIO...); invariants still are.
  Driver(Vm& vm, Checker* checker, bool tolerate_errors = false)
      : vm_(vm), checker_(checker), tolerate_errors_(tolerate_errors) {}
  // Runs `fn` as operation `name`; false once something failed.
  bool op(const std::string& name, const std::function<int()>& fn);
  // Runs `vcpu_fn(v)` for every vCPU as one operation: on one thread per
  // vCPU with the native engine (while this thread runs `vmm_fn`, then
  // checks the invariants under the exclusive lock until the vCPUs are
  // done), or one after the other. A non-zero return fails the operation.
  bool parallel(const std::string& name, int vcpus, const std::function<int(int)>& vcpu_fn,
                const std::function<int()>& vmm_fn = nullptr);
  void set_threads(bool on) { threads_ = on; }
  bool threads() const { return threads_; }
  // Under the explorer: every operation runs as virtual threads of the
  // harness's deterministic engine (one for op(), one per vCPU plus the VMM
  // for parallel()), so its interleavings are chosen and replayable.
  void set_harness(explore::Harness* h) { harness_ = h; }
  // --trace: each operation's name goes into the trace before it runs.
  void set_trace(EventTrace* t) { trace_ = t; }
  bool explored() const { return harness_ != nullptr; }
  // The engine deadlocked or livelocked: the harness holds the result.
  bool abandoned() const { return abandoned_; }
  uint64_t concurrent_checks() const { return concurrent_checks_; }
  // A line of the workload's figures, as the selftest prints it: kept for
  // the report, and printed at once when `echo` is on.
  void print(std::string line);
  void set_echo(bool on) { echo_ = on; }
  const std::vector<std::string>& figures() const { return figures_; }
  // The chart `name`, made with these labels on first use.
  Chart& chart(const std::string& name, const std::string& title, const std::string& xlabel, const std::string& ylabel,
               bool bars = false);
  std::vector<Chart>& charts() { return charts_; }
  // A failure the workload saw itself (a dirty bitmap that lost a page, a
  // write that read-only memory let through): it fails the run whether or
  // not a checker runs. Charged to the operation running, or else to the
  // last one. Safe from vCPU threads.
  void report(std::string invariant, std::string detail);
  // Those reported with no checker to hand them to.
  const std::vector<Violation>& failures() const { return failures_; }
  bool failed() const { return failed_; }
  uint64_t ops() const { return ops_; }
  Vm& vm() { return vm_; }
  Checker* checker() { return checker_; }

 private:
  Vm& vm_;
  Checker* checker_;
  bool tolerate_errors_;
  bool threads_ = false;
  explore::Harness* harness_ = nullptr;
  EventTrace* trace_ = nullptr;
  bool echo_ = false;
  std::vector<std::string> figures_;
  std::vector<Chart> charts_;
  // The progress line on a terminal (stderr), for runs longer than a moment.
  void progress(const std::string& op);
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now(), shown_{};
  bool progress_shown_ = false;

 public:
  // Clears the progress line (the run is over).
  void end_progress();

 private:
  bool abandoned_ = false;
  bool finish_op(const std::string& name, int r);
  // Hands the reports made during operation `name` on: to the checker, or
  // to failures_.
  void take_reports(const std::string& name);
  void begin_op(const std::string& name);
  std::mutex reports_mu_;
  std::vector<std::pair<std::string, std::string>> pending_;  // (invariant, detail)
  std::vector<Violation> failures_;
  std::string last_op_;
  bool in_op_ = false;
  bool run_virtual(const std::string& name, std::vector<std::pair<std::string, std::function<void()>>> threads);
  uint64_t concurrent_checks_ = 0;
  uint64_t ops_ = 0;
  bool failed_ = false;
};

// vm.vcpu_access(), run again while it gives up (ExitReason::Retry) for up
// to 10 s on vCPU threads outside the explorer, as KVM_RUN would re-enter.
ExitReason vcpu_access_retrying(Vm& vm, int vcpu, uint64_t gpa, bool write, PgLevel accept_level = PgLevel::k4K);
// The guest touches npages pages from gpa, in a random order when `rng` is
// given. Returns 0, or -EIO (VM dead), -ENOMEM, -EFAULT (any other exit but MMIO).
int touch_pages(Vm& vm, int vcpu, uint64_t gpa, uint64_t npages, bool write, std::mt19937_64* rng = nullptr,
                PgLevel accept_level = PgLevel::k4K);
// A TD's VmConfig from the user's workload config.
VmConfig td_vm_config(const WorkloadConfig& c, uint64_t pool_pages);

struct WorkloadInfo {
  std::string name;
  std::string description;
  // Builds the VM config the workload needs from the user's config.
  VmConfig (*vm_config)(const WorkloadConfig&);
  // Drives the VM; returns false if it had to stop early.
  bool (*run)(Driver&, const WorkloadConfig&, std::mt19937_64&);
  // Why the config cannot describe a run of this workload (a size that is
  // not a multiple of the page, too many slots...), or "" (null: never).
  std::string (*refusal)(const WorkloadConfig&) = nullptr;
  // The guest RAM the run will have, in GiB, for the summary and for the
  // host-memory check before anything is allocated (null: --gib).
  double (*guest_gib)(const WorkloadConfig&) = nullptr;
};

const std::vector<WorkloadInfo>& workloads();
const WorkloadInfo& td_tiny_workload();
const WorkloadInfo& demand_paging_workload();
const WorkloadInfo& dirty_log_perf_workload();
const WorkloadInfo& private_mem_conversions_workload();
const WorkloadInfo& mmu_stress_workload();
const WorkloadInfo& pre_fault_memory_workload();
const WorkloadInfo* find_workload(const std::string& name);

}  // namespace mirrormmu
