// SPDX-License-Identifier: MIT
#include "workload/runner.h"

#include <fmt/format.h>

#include <chrono>

#include "sync/rcu.h"

namespace mirrormmu {

std::string workload_refusal(const WorkloadConfig& cfg) {
  const WorkloadInfo* w = find_workload(cfg.name);
  if (!w) return "unknown workload '" + cfg.name + "'";
  if (w->refusal)
    if (std::string why = w->refusal(cfg); !why.empty()) return why;
  // A design that cannot do what the run asks says so instead of running a
  // different experiment.
  return vm_config_refusal(w->vm_config(cfg));
}

RunOutcome run_workload(const WorkloadConfig& cfg) {
  RunOutcome out;
  out.config = cfg;
  if (std::string why = workload_refusal(cfg); !why.empty()) {
    out.result.error = why;
    out.result.exit_code = 2;
    return out;
  }
  const WorkloadInfo* w = find_workload(cfg.name);
  const VmConfig vc = w->vm_config(cfg);
  sync::RcuThread rcu_thread;
  const auto t0 = std::chrono::steady_clock::now();
  FaultInjector* inject = cfg.inject;
  if (!inject && (!cfg.seamcall_injections.empty() || !cfg.alloc_injections.empty())) {
    out.injector = std::make_unique<FaultInjector>();
    for (const auto& i : cfg.seamcall_injections) out.injector->add_seamcall_rule(i.rule);
    for (const auto& i : cfg.alloc_injections) out.injector->add_alloc_rule(i.rule);
    inject = out.injector.get();
  }
  out.vm = std::make_unique<Vm>(vc, inject);
  out.vm->mmu().set_resched_interval(cfg.resched_interval);
  out.vm->pool().fail_after(cfg.pool_fail_after);
  if (cfg.check) {
    CheckerOptions opts;
    opts.bug_sites_are_failures = cfg.bug_sites_are_failures;
    opts.mode = cfg.check_mode;
    opts.full_every = cfg.full_check_every;
    out.checker = std::make_unique<Checker>(*out.vm, opts);
  }
  // An injected failure makes operations fail; what it breaks is judged by
  // the invariants and the sites it reaches.
  std::unique_ptr<EventTrace> trace;
  if (!cfg.trace_path.empty()) {
    trace = std::make_unique<EventTrace>(*out.vm, cfg.trace_path);
    if (!trace->error().empty()) {
      out.result.error = "--trace: " + trace->error();
      out.result.exit_code = 2;
      trace.reset();
      out.checker.reset();
      out.vm.reset();
      return out;
    }
  }
  Driver d(*out.vm, out.checker.get(), inject != nullptr || cfg.pool_fail_after >= 0);
  d.set_threads(cfg.threads);
  d.set_trace(trace.get());
  d.set_echo(cfg.print_figures);
  std::mt19937_64 rng(cfg.seed);
  w->run(d, cfg, rng);
  // Incremental and final checking end with the whole guest looked at once,
  // while it is still there: what no range recorded is found here.
  if (out.checker && cfg.check_mode != CheckMode::Full) out.checker->check_full("the end of the run (full check)");
  // Teardown runs even after a failure: it must still give every page back.
  out.vm->destroy();
  if (out.checker) out.checker->check_end_of_life();
  if (trace) {
    out.result.trace_events = trace->events();
    trace.reset();  // the file is complete before the summary is printed
  }
  out.result.ops = d.ops() + 1;
  out.result.figures = d.figures();
  out.result.failures = d.failures();
  out.result.charts = d.charts();
  d.end_progress();
  out.result.concurrent_checks = d.concurrent_checks();
  out.result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Without a checker (--no-check) a site that fired still fails the run.
  out.result.ok = (!out.checker || out.checker->ok()) && out.result.failures.empty() &&
                  (!cfg.bug_sites_are_failures || out.vm->bugs().total_hits() == 0);
  out.result.exit_code = out.result.ok ? 0 : 1;
  // An injection that never fired asked a question the run never put: that
  // is bad input, not a clean result.
  if (out.injector) {
    for (size_t i = 0; i < cfg.seamcall_injections.size(); i++) {
      if (out.injector->seamcall_rule_fired(i)) continue;
      const auto& inj = cfg.seamcall_injections[i];
      out.result.error = fmt::format("--inject {}: call #{} never happened ({} calls of that leaf in this run)",
                                     inj.spec, inj.rule.ordinal, out.injector->leaf_calls(inj.rule.leaf));
      out.result.exit_code = 2;
      break;
    }
    for (size_t i = 0; i < cfg.alloc_injections.size() && out.result.exit_code != 2; i++) {
      if (out.injector->alloc_rule_fired(i)) continue;
      const auto& inj = cfg.alloc_injections[i];
      out.result.error = fmt::format("--inject-alloc {}: allocation #{} never happened ({} in this run)", inj.spec,
                                     inj.rule.ordinal, out.injector->seen(inj.rule.point));
      out.result.exit_code = 2;
    }
  }
  return out;
}

}  // namespace mirrormmu
