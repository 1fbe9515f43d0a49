// SPDX-License-Identifier: MIT
// --trace FILE: what the MMU, the TDX module and the bug sites report, one
// line per event in trace-cmd's report layout (task-pid, CPU, timestamp,
// event, fields), with the kernel's own tracepoint names and field formats
// where the kernel has one (kvm_tdp_mmu_spte_changed, kvm_mmu_spte_requested,
// kvm_mmu_set_spte) and tdx_seamcall / kvm_bug_site where it has none.
//
// It sits in front of whatever observed the VM before it (the checker) and
// passes every event on, so a traced run is checked exactly as an untraced
// one; on destruction it puts the previous observers back.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

#include "base/bug.h"
#include "mmu/observer.h"
#include "tdx/module.h"
#include "vm/vm.h"

namespace mirrormmu {

class EventTrace final : public MmuObserver, public tdx::SeamcallObserver, public BugObserver {
 public:
  // Truncates and opens `path`; `error()` says why if it could not.
  EventTrace(Vm& vm, const std::string& path);
  ~EventTrace() override;
  EventTrace(const EventTrace&) = delete;
  EventTrace& operator=(const EventTrace&) = delete;

  const std::string& error() const { return error_; }
  uint64_t events() const { return events_; }
  // A line of the workload's own (an operation starting), as a
  // `mirrormmu_op` event.
  void op(const std::string& name);

  void on_spte_changed(const SpteChange& c) override;
  void on_external_hook(HookKind kind, Gfn gfn, PgLevel level, int ret) override;
  void on_tlb_flush(Gfn start, uint64_t npages) override;
  void on_table_freed(Pfn table) override;
  void on_lost_update(Gfn gfn, PgLevel level, uint64_t expected, uint64_t actual, uint64_t new_spte) override;
  void on_spte_change_result(const SpteChange& c, int ret) override;
  void on_gfn_range_changed(Gfn start, uint64_t npages) override;
  void on_spte_requested(Gfn gfn, Pfn pfn, PgLevel goal_level) override;
  void on_set_spte(Gfn gfn, PgLevel level, const uint64_t* sptep, uint64_t spte) override;
  void on_seamcall(tdx::Leaf leaf, uint64_t gpa, int tdx_level, tdx::Status status) override;
  void on_injected_seamcall(tdx::Leaf leaf, uint64_t gpa, int tdx_level, tdx::Status status) override;
  void on_bug_site(Site s, bool vm_bugged_now) override;

 private:
  template <class... Args>
  void emit(const char* event, const char* fmt, Args&&... args);

  Vm& vm_;
  std::FILE* f_ = nullptr;
  std::string error_;
  std::mutex mu_;
  uint64_t events_ = 0;
  std::chrono::steady_clock::time_point t0_;
  MmuObserver* next_mmu_;
  tdx::SeamcallObserver* next_tdx_ = nullptr;
  BugObserver* next_bug_;
};

}  // namespace mirrormmu
