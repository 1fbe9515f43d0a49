// SPDX-License-Identifier: MIT
#include "workload/workload.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <unistd.h>
#include <thread>

#include <fmt/format.h>

#include "sync/det_engine.h"
#include "sync/rcu.h"

namespace mirrormmu {

bool Driver::run_virtual(const std::string& name,
                         std::vector<std::pair<std::string, std::function<void()>>> threads) {
  for (auto& [thread, fn] : threads) harness_->engine().spawn(thread, std::move(fn));
  if (harness_->run(name)) return true;
  abandoned_ = failed_ = true;
  std::lock_guard g(reports_mu_);
  in_op_ = false;
  return false;
}

void Driver::begin_op(const std::string& name) {
  ops_++;
  if (trace_) [[unlikely]]
    trace_->op(name);
  progress(name);
  std::lock_guard g(reports_mu_);
  in_op_ = true;
  last_op_ = name;
}

void Driver::report(std::string invariant, std::string detail) {
  std::lock_guard g(reports_mu_);
  if (in_op_) {
    pending_.emplace_back(std::move(invariant), std::move(detail));
    return;
  }
  // Between operations, on the driver's own thread: the last one is to blame.
  if (checker_)
    checker_->report(std::move(invariant), std::move(detail));
  else
    failures_.push_back({std::move(invariant), std::move(detail), ops_, last_op_});
  failed_ = true;
}

void Driver::take_reports(const std::string& name) {
  std::lock_guard g(reports_mu_);
  in_op_ = false;
  for (auto& [invariant, detail] : pending_) {
    if (checker_)
      checker_->report_during(name, std::move(invariant), std::move(detail));
    else
      failures_.push_back({std::move(invariant), std::move(detail), ops_, name});
  }
  pending_.clear();
}

bool Driver::op(const std::string& name, const std::function<int()>& fn) {
  if (failed_) return false;
  begin_op(name);
  int r = 0;
  if (harness_) {
    if (!run_virtual(name, {{"vmm", [&] { r = fn(); }}})) return false;
  } else {
    const auto t0 = std::chrono::steady_clock::now();
    r = fn();
    chart("operations", "time per operation (checks excluded)", "operation", "milliseconds")
        .add("operation", double(ops_), std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return finish_op(name, r);
}

void Chart::add(const std::string& label, double x, double y) {
  for (Series& s : series)
    if (s.label == label) {
      s.points.emplace_back(x, y);
      return;
    }
  series.push_back({label, {{x, y}}});
}

Chart& Driver::chart(const std::string& name, const std::string& title, const std::string& xlabel,
                     const std::string& ylabel, bool bars) {
  for (Chart& c : charts_)
    if (c.name == name) return c;
  charts_.push_back({name, title, xlabel, ylabel, bars, {}, {}});
  return charts_.back();
}

// On a terminal, a run that takes more than two seconds shows which
// operation it is at, at most five times a second, on one line of stderr;
// anywhere else it stays silent.
void Driver::progress(const std::string& op) {
  if (!echo_ || harness_) return;
  static const bool tty = ::isatty(STDERR_FILENO);
  if (!tty) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - started_ < std::chrono::seconds(2) || now - shown_ < std::chrono::milliseconds(200)) return;
  shown_ = now;
  progress_shown_ = true;
  std::fprintf(stderr, "\r\033[K[%.1f s] operation %llu: %.100s", std::chrono::duration<double>(now - started_).count(),
               static_cast<unsigned long long>(ops_), op.c_str());
  std::fflush(stderr);
}

void Driver::end_progress() {
  if (!progress_shown_) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
  progress_shown_ = false;
}

void Driver::print(std::string line) {
  end_progress();
  if (echo_) {
    std::fputs(line.c_str(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }
  figures_.push_back(std::move(line));
}

bool Driver::finish_op(const std::string& name, int r) {
  take_reports(name);
  // An operation that failed when nothing was injected fails the run, with
  // or without a checker.
  if (r < 0 && !tolerate_errors_ && !vm_.bugs().bugged()) {
    std::string why = vm_.take_giveup_report();
    std::string detail = name + " returned " + std::to_string(r) + (why.empty() ? "" : ": " + why);
    if (checker_)
      checker_->report("op_failed", std::move(detail));
    else
      failures_.push_back({"op_failed", std::move(detail), ops_, name});
  }
  if (checker_) {
    checker_->check(name);
    if (!checker_->ok()) failed_ = true;
  } else if (!failures_.empty()) {
    failed_ = true;
  }
  return !failed_;
}

bool Driver::parallel(const std::string& name, int vcpus, const std::function<int(int)>& vcpu_fn,
                      const std::function<int()>& vmm_fn) {
  if (harness_) {
    if (failed_) return false;
    begin_op(name);
    std::vector<int> rcs(static_cast<size_t>(vcpus), 0);
    int vmm_rc = 0;
    std::vector<std::pair<std::string, std::function<void()>>> threads;
    for (int v = 0; v < vcpus; v++)
      threads.emplace_back(fmt::format("vcpu{}", v), [&, v] {
        rcs[static_cast<size_t>(v)] = vcpu_fn(v);
        vm_.vcpu_exit(v);  // KVM_RUN returns
      });
    if (vmm_fn) threads.emplace_back("vmm", [&] { vmm_rc = vmm_fn(); });
    vm_.set_vcpus_threaded(true);
    if (!run_virtual(name, std::move(threads))) return false;
    vm_.set_vcpus_threaded(false);
    int rc = vmm_rc;
    for (int r : rcs) rc = rc ? rc : r;
    return finish_op(name, rc);
  }
  return op(name, [&] {
    if (!threads_) {
      int rc = 0;
      for (int v = 0; v < vcpus && rc == 0; v++) rc = vcpu_fn(v);
      if (vmm_fn && rc == 0) rc = vmm_fn();
      return rc;
    }
    std::atomic<int> rc{0};
    std::atomic<int> running{vcpus};
    vm_.set_vcpus_threaded(true);
    std::vector<std::thread> ts;
    for (int v = 0; v < vcpus; v++)
      ts.emplace_back([&, v] {
        sync::RcuThread rcu_thread;
        const int r = vcpu_fn(v);
        if (r) rc.store(r);
        // KVM_RUN returns: out of guest mode, so no kick waits on this vCPU.
        vm_.vcpu_exit(v);
        running.fetch_sub(1);
      });
    int vmm_rc = vmm_fn ? vmm_fn() : 0;
    // The invariants hold whenever mmu_lock can be taken for write, vCPUs
    // running or not: check while they run, contending with their faults.
    while (running.load() > 0 && checker_ && checker_->ok()) {
      checker_->check(name + " (while vCPUs run)");
      concurrent_checks_++;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    for (auto& t : ts) t.join();
    vm_.set_vcpus_threaded(false);
    return vmm_rc ? vmm_rc : rc.load();
  });
}

ExitReason vcpu_access_retrying(Vm& vm, int vcpu, uint64_t gpa, bool write, PgLevel accept_level) {
  // A fault the model gave up retrying is, with other threads converting
  // and zapping (each invalidation that ends while the fault waits for
  // mmu_lock makes it stale), the guest's instruction executed again:
  // KVM_RUN would simply go on. For 10 s at most, so a livelock is still
  // an error; alone on its thread nothing else could make progress.
  ExitReason e = vm.vcpu_access(vcpu, gpa, write, accept_level);
  if (e == ExitReason::Retry && vm.vcpus_threaded() && !sync::DetEngine::active()) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (e == ExitReason::Retry && std::chrono::steady_clock::now() < give_up)
      e = vm.vcpu_access(vcpu, gpa, write, accept_level);
  }
  return e;
}

int touch_pages(Vm& vm, int vcpu, uint64_t gpa, uint64_t npages, bool write, std::mt19937_64* rng,
                PgLevel accept_level) {
  std::vector<uint64_t> order(npages);
  for (uint64_t i = 0; i < npages; i++) order[i] = gpa + (i << kPageShift);
  if (rng) std::shuffle(order.begin(), order.end(), *rng);
  for (uint64_t p : order) {
    const ExitReason e = vcpu_access_retrying(vm, vcpu, p, write, accept_level);
    switch (e) {
      case ExitReason::None:
      case ExitReason::Mmio: break;
      case ExitReason::VmDead: return -EIO;
      case ExitReason::NoMemory: return -ENOMEM;
      case ExitReason::Retry: return -EAGAIN;
      default: return -EFAULT;
    }
  }
  return 0;
}

VmConfig td_vm_config(const WorkloadConfig& c, uint64_t pool_pages) {
  VmConfig v;
  v.type = VmType::Td;
  v.ept_levels = c.ept_levels;
  v.nr_vcpus = c.vcpus;
  v.design = c.design;
  v.pool_pages = pool_pages;
  v.huge_pages = c.huge_pages;
  v.eager_page_split = c.eager_page_split;
  v.dynamic_pamt = c.dynamic_pamt;
  v.enhanced_demote_interruptibility = c.enhanced_demote_interruptibility;
  v.external_spt_policy = c.external_spt_policy;
  v.split_alloc = c.split_alloc;
  v.what_if = c.what_if;
  return v;
}

}  // namespace mirrormmu
