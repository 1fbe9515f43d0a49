// SPDX-License-Identifier: MIT
#include "check/event_trace.h"

#include <fmt/format.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/running_vcpu.h"
#include "spte/spte.h"
#include "tdx/status.h"

namespace mirrormmu {

EventTrace::EventTrace(Vm& vm, const std::string& path)
    : vm_(vm), t0_(std::chrono::steady_clock::now()), next_mmu_(vm.mmu().observer()), next_bug_(vm.bugs().observer()) {
  f_ = std::fopen(path.c_str(), "w");
  if (!f_) {
    error_ = fmt::format("cannot write '{}': {}", path, std::strerror(errno));
    return;
  }
  std::fputs("# tracer: nop\n#\n#           TASK-PID   CPU#     TIMESTAMP  FUNCTION\n"
             "#              | |       |          |         |\n",
             f_);
  vm_.mmu().set_observer(this);
  vm_.bugs().set_observer(this);
  if (auto* m = vm_.module()) {
    next_tdx_ = m->observer();
    m->set_observer(this);
  }
}

EventTrace::~EventTrace() {
  if (!f_) return;
  vm_.mmu().set_observer(next_mmu_);
  vm_.bugs().set_observer(next_bug_);
  if (auto* m = vm_.module()) m->set_observer(next_tdx_);
  std::fclose(f_);
}

// The task is the vCPU whose ioctl the thread is in (vcpuN), else the VMM;
// its CPU number is the vCPU's, the VMM's is the one after the last vCPU.
template <class... Args>
void EventTrace::emit(const char* event, const char* format, Args&&... args) {
  const int vcpu = kvm_get_running_vcpu();
  const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  const std::string task = vcpu >= 0 ? fmt::format("vcpu{}", vcpu) : std::string("vmm");
  const int cpu = vcpu >= 0 ? vcpu : vm_.nr_vcpus();
  const long tid = ::syscall(SYS_gettid);
  std::string fields = fmt::format(fmt::runtime(format), std::forward<Args>(args)...);
  std::lock_guard g(mu_);
  std::fprintf(f_, "%16s-%-6ld [%03d] %12.6f: %s: %s\n", task.c_str(), tid, cpu, t, event, fields.c_str());
  events_++;
}

void EventTrace::op(const std::string& name) { emit("mirrormmu_op", "{}", name); }

void EventTrace::on_spte_changed(const SpteChange& c) {
  emit("kvm_tdp_mmu_spte_changed", "as id 0 gfn {:x} level {} old_spte {:x} new_spte {:x}", c.gfn.v, lvl(c.level),
       c.old_spte, c.new_spte);
  if (next_mmu_) next_mmu_->on_spte_changed(c);
}

void EventTrace::on_external_hook(HookKind kind, Gfn gfn, PgLevel level, int ret) {
  emit("kvm_x86_external_hook", "{} gfn {:x} level {} ret {}", hook_kind_name(kind), gfn.v, lvl(level), ret);
  if (next_mmu_) next_mmu_->on_external_hook(kind, gfn, level, ret);
}

void EventTrace::on_tlb_flush(Gfn start, uint64_t npages) {
  if (npages) emit("kvm_tlb_flush_remote", "gfn {:x} pages {}", start.v, npages);
  else emit("kvm_tlb_flush_remote", "all");
  if (next_mmu_) next_mmu_->on_tlb_flush(start, npages);
}

void EventTrace::on_table_freed(Pfn table) {
  emit("kvm_mmu_free_sp", "pfn {:x}", table.v);
  if (next_mmu_) next_mmu_->on_table_freed(table);
}

void EventTrace::on_lost_update(Gfn gfn, PgLevel level, uint64_t expected, uint64_t actual, uint64_t new_spte) {
  emit("kvm_tdp_mmu_lost_update", "gfn {:x} level {} expected {:x} actual {:x} new_spte {:x}", gfn.v, lvl(level),
       expected, actual, new_spte);
  if (next_mmu_) next_mmu_->on_lost_update(gfn, level, expected, actual, new_spte);
}

void EventTrace::on_spte_change_result(const SpteChange& c, int ret) {
  if (ret) emit("kvm_tdp_mmu_spte_refused", "gfn {:x} level {} old_spte {:x} new_spte {:x} ret {}", c.gfn.v,
                lvl(c.level), c.old_spte, c.new_spte, ret);
  if (next_mmu_) next_mmu_->on_spte_change_result(c, ret);
}

void EventTrace::on_gfn_range_changed(Gfn start, uint64_t npages) {
  emit("kvm_gfn_range_changed", "gfn {:x} pages {}", start.v, npages);
  if (next_mmu_) next_mmu_->on_gfn_range_changed(start, npages);
}

void EventTrace::on_spte_requested(Gfn gfn, Pfn pfn, PgLevel goal_level) {
  emit("kvm_mmu_spte_requested", "gfn {:x} pfn {:x} level {}", gfn.v, pfn.v, lvl(goal_level));
  if (next_mmu_) next_mmu_->on_spte_requested(gfn, pfn, goal_level);
}

void EventTrace::on_set_spte(Gfn gfn, PgLevel level, const uint64_t* sptep, uint64_t spte) {
  // The kernel's (%s%s%s): writable, executable, and user (reads; EPT has no U bit).
  emit("kvm_mmu_set_spte", "gfn {:x} spte {:x} ({}{}{}) level {} sptep {}", gfn.v, spte,
       spte & spte::kWritable ? 'w' : '-', spte & spte::kExecutable ? 'x' : '-', spte & spte::kReadable ? 'u' : '-',
       lvl(level), static_cast<const void*>(sptep));
  if (next_mmu_) next_mmu_->on_set_spte(gfn, level, sptep, spte);
}

void EventTrace::on_seamcall(tdx::Leaf leaf, uint64_t gpa, int tdx_level, tdx::Status status) {
  emit("tdx_seamcall", "{} gpa {:x} level {} status {}", tdx::leaf_name(leaf), gpa, tdx_level,
       tdx::status_str(status));
  if (next_tdx_) next_tdx_->on_seamcall(leaf, gpa, tdx_level, status);
}

void EventTrace::on_injected_seamcall(tdx::Leaf leaf, uint64_t gpa, int tdx_level, tdx::Status status) {
  emit("tdx_seamcall", "{} gpa {:x} level {} status {} (injected)", tdx::leaf_name(leaf), gpa, tdx_level,
       tdx::status_str(status));
  if (next_tdx_) next_tdx_->on_injected_seamcall(leaf, gpa, tdx_level, status);
}

void EventTrace::on_bug_site(Site s, bool vm_bugged_now) {
  emit("kvm_bug_site", "{} {}: {}{}", bug_kind_name(site_info(s).kind), site_info(s).id, site_info(s).text,
       vm_bugged_now ? " (VM bugged)" : "");
  if (next_bug_) next_bug_->on_bug_site(s, vm_bugged_now);
}

}  // namespace mirrormmu
