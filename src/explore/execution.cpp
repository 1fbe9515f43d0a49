// SPDX-License-Identifier: MIT
#include "explore/execution.h"

#include <fmt/format.h>

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "check/checker.h"
#include "check/end_state.h"
#include "explore/tracer.h"
#include "spte/spte.h"
#include "sync/rcu.h"
#include "tdx/status.h"

namespace mirrormmu::explore {

namespace {

struct Parked {
  std::unique_ptr<sync::DetEngine> engine;
  std::unique_ptr<Tracer> tracer;
  std::unique_ptr<Checker> ck;
  std::unique_ptr<Vm> vm;
  std::unique_ptr<FaultInjector> inject;
};

std::vector<Parked>& graveyard() {
  static auto* g = new std::vector<Parked>();
  return *g;
}
std::mutex g_graveyard_lock;

}  // namespace

Harness::Harness(const VmConfig& vc, sync::DetStrategy& strategy, const ExecConfig& cfg)
    : inject_(std::make_unique<FaultInjector>()),  // every injectable point asks the engine through it
      vm_(std::make_unique<Vm>(vc, inject_.get())),
      ck_(std::make_unique<Checker>(*vm_)),
      tracer_(std::make_unique<Tracer>(*ck_, *vm_, cfg.trace)),
      engine_(std::make_unique<sync::DetEngine>(strategy, cfg.limits)) {
  vm_->mmu().set_observer(tracer_.get());
  vm_->bugs().set_observer(tracer_.get());
  vm_->module()->set_observer(tracer_.get());
  tracer_->set_engine(engine_.get());
  engine_->set_sink(tracer_.get());
}

Harness::~Harness() {
  if (!vm_) return;  // parked
  engine_->set_sink(nullptr);
  vm_->mmu().set_observer(ck_.get());
  vm_->bugs().set_observer(ck_.get());
  vm_->module()->set_observer(ck_.get());
}

void record_engine(const sync::DetEngine& e, ExecResult& r) {
  r.steps = e.steps();
  r.steps_fast_forwarded = e.steps_fast_forwarded();
  r.decisions = e.decisions();
  r.preemptions = e.preemptions();
  r.fails_fired = 0;
  for (size_t k = 0; k < sync::kFailKindCount; k++) {
    r.fired_by_kind[k] = e.fails_fired(static_cast<sync::FailKind>(k));
    r.fails_fired += r.fired_by_kind[k];
  }
  r.choices.clear();
  for (const auto& d : e.decision_log())
    if (d.chosen) r.choices[d.key] = d.chosen;
  r.thread_names.clear();
  for (int i = 0; i < e.thread_count(); i++) r.thread_names.push_back(e.thread_name(i));
  r.decisions_by_thread.assign(r.thread_names.size(), 0);
  for (const auto& d : e.decision_log())
    if (d.thread >= 0 && d.thread < static_cast<int>(r.decisions_by_thread.size())) r.decisions_by_thread[d.thread]++;
}

void Harness::count() { record_engine(*engine_, r_); }

void Harness::first_failure() {
  if (ck_->ok() || !r_.invariant.empty()) return;
  r_.ok = false;
  const Violation& v = ck_->violations().front();
  r_.invariant = v.invariant;
  r_.detail = v.detail;
  r_.where = v.op;
}

bool Harness::injected() const {
  for (size_t k = 0; k < sync::kFailKindCount; k++)
    if (engine_->fails_fired(static_cast<sync::FailKind>(k))) return true;
  return false;
}

// Deadlocked or livelocked threads stay parked inside MMU code for good,
// holding locks and pointers into the VM: neither the VM nor the engine can
// be torn down safely. They are kept, reachable until the process exits and
// never destroyed, so that a leak checker sees a deliberate graveyard.
void Harness::park() {
  std::lock_guard g(g_graveyard_lock);
  graveyard().push_back({std::move(engine_), std::move(tracer_), std::move(ck_), std::move(vm_), std::move(inject_)});
}

bool Harness::run(const std::string& phase) {
  if (engine_->run()) {
    if (!engine_->violations().empty() && r_.invariant.empty()) {
      r_.ok = false;
      r_.invariant = "use_after_grace_period";
      r_.detail = engine_->violations().front();
      r_.where = phase.empty() ? "the interleaved part" : phase;
    }
    return true;
  }
  count();
  r_.ok = false;
  r_.aborted = true;
  r_.invariant = (engine_->abort_reason().rfind("deadlock", 0) == 0 ? "deadlock" : "livelock") +
                 (phase.empty() ? std::string() : " in " + phase);
  r_.detail = engine_->abort_reason();
  r_.trace = tracer_->take();
  park();
  return false;
}

ExecResult& Harness::stop(std::string invariant, std::string detail) {
  count();
  r_.ok = false;
  r_.invariant = std::move(invariant);
  r_.detail = std::move(detail);
  r_.trace = tracer_->take();
  return r_;
}

ExecResult& Harness::finish() {
  engine_->spawn("teardown", [this] { vm_->destroy(); });
  if (!run("teardown")) return r_;
  count();
  tracer_->set_engine(nullptr);
  ck_->check_end_of_life();
  first_failure();
  for (size_t i = 0; i < TransitionCounts::kClasses; i++) r_.classes[i] = ck_->transitions().count(i) != 0;
  for (size_t i = 0; i < kSiteCount; i++) r_.sites[i] = vm_->bugs().hits(static_cast<Site>(i));
  r_.rows = ck_->transition_rows();
  r_.trace = tracer_->take();
  return r_;
}

ExecResult run_execution(const Scenario& s, sync::DetStrategy& strategy, const ExecConfig& cfg) {
  sync::RcuThread rcu_thread;
  VmConfig vc;
  vc.type = VmType::Td;
  vc.ept_levels = s.ept_levels;
  vc.pool_pages = s.pool_pages;
  std::string spec_error;
  // The spec was checked when the exploration or replay started.
  (void)parse_design_spec(cfg.design, &vc.design, &vc.what_if, &spec_error);
  vc.nr_vcpus = s.vcpus;
  vc.huge_pages = s.huge_pages;
  vc.eager_page_split = s.eager_page_split;
  vc.dynamic_pamt = s.dynamic_pamt;
  if (s.tdx_pool) vc.external_spt_policy = ExternalSptPolicy::TdxPool;
  // Setup, the racing part and teardown all run under the engine, traced,
  // with failure points live: a failure injected while the TD is built or
  // destroyed is as much a part of the story as one in the race.
  Harness h(vc, strategy, cfg);
  Vm& vm = h.vm();
  std::string setup_error;
  h.engine().spawn("setup", [&] {
    auto fail = [&](const std::string& what, int rc) { setup_error = fmt::format("{} returned {}", what, rc); };
    if (int rc = vm.create()) return fail("create", rc);
    for (const auto& sl : s.slots)
      if (int rc = vm.add_memslot(sl.id, sl.gpa, sl.size, sl.flags)) return fail("add_memslot", rc);
    if (s.finalize_in_setup)
      if (int rc = vm.finalize()) return fail("finalize", rc);
    if (s.private_pages)
      if (int rc = vm.set_memory_attributes(s.slots[0].gpa, s.private_pages * kPageSize, true))
        return fail("set_memory_attributes", rc);
    for (const auto& op : s.setup)
      if (int rc = run_op(vm, op)) return fail(op.describe(), rc);
    vm.kick_all_vcpus_out();
  });
  if (!h.run("setup")) return h.result();
  // A setup step that fails without an injected failure is the scenario's
  // fault; with one, KVM said no to the VMM, and the TD is torn down as the
  // VMM would do next.
  const bool setup_refused = !setup_error.empty();
  if (setup_refused && !h.injected()) return h.stop("setup", setup_error);
  h.checker().check(setup_refused ? "setup (refused: " + setup_error + ")" : std::string("setup"));
  if (!setup_refused && h.checker().ok()) {
    vm.set_vcpus_threaded(true);
    for (const auto& t : s.threads) {
      h.engine().spawn(t.name, [&vm, &t] {
        std::vector<int> vcpus;
        for (const auto& op : t.ops) {
          if (run_op(vm, op) == -EIO) break;  // the VM died: stop this thread
          if (op.kind == OpKind::Access) vcpus.push_back(op.vcpu);
        }
        // KVM_RUN returns: the vCPU is out of guest mode for good.
        for (int v : vcpus) vm.vcpu_exit(v);
      });
    }
    if (!h.run("")) return h.result();
    vm.set_vcpus_threaded(false);
    h.checker().check("the threads");
  }
  h.result().end_state = end_state_digest(vm);
  return h.finish();
}

std::string format_trace(const ExecResult& r) {
  std::string out;
  for (const auto& e : r.trace) {
    const std::string who = e.thread >= 0 && e.thread < static_cast<int>(r.thread_names.size())
                                ? r.thread_names[e.thread]
                                : std::string("main");
    out += fmt::format("{:>7}  {:<8} {}\n", e.step, who, e.text);
  }
  return out;
}

}  // namespace mirrormmu::explore
