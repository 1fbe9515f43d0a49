#include "explore/execution.h"

#include <fmt/format.h>

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "check/checker.h"
#include "spte/spte.h"
#include "sync/rcu.h"
#include "tdx/status.h"

namespace mirrormmu::explore {

namespace {

// Sees everything the checker sees (and forwards it), plus the engine's
// own events, and writes them down with the step and thread they came from.
class Tracer final : public MmuObserver, public tdx::SeamcallObserver, public BugObserver, public sync::EngineSink {
 public:
  Tracer(Checker& ck, Vm& vm, bool record) : ck_(ck), vm_(vm), record_(record) {
    names_[&vm.mmu().mmu_lock()] = "mmu_lock";
    names_[&vm.slots_lock()] = "slots_lock";
  }
  void set_engine(sync::DetEngine* e) { engine_ = e; }
  std::vector<TraceEvent> take() { return std::move(events_); }

  void on_spte_changed(const SpteChange& c) override {
    ck_.on_spte_changed(c);
    if (!record_) return;
    const uint64_t mmio = vm_.mmu().config().mmio_value;
    const TransitionClass cls{spte::kind_of(c.old_spte, c.level, mmio), spte::kind_of(c.new_spte, c.level, mmio),
                              c.shared, c.mirror};
    add(TraceEvent::Kind::Instant, "spte",
        fmt::format("spte {} gfn={:#x} {} {:#018x} -> {:#018x} [{}]", c.mirror ? "mirror" : "direct", c.gfn.v,
                    level_name(c.level), c.old_spte, c.new_spte, cls.name()));
  }
  void on_external_hook(HookKind kind, Gfn gfn, PgLevel level, int ret) override {
    ck_.on_external_hook(kind, gfn, level, ret);
    if (record_)
      add(TraceEvent::Kind::Instant, hook_kind_name(kind),
          fmt::format("hook {} gfn={:#x} {} = {}", hook_kind_name(kind), gfn.v, level_name(level), ret));
  }
  void on_tlb_flush() override { ck_.on_tlb_flush(); }
  void on_spte_change_result(const SpteChange& c, int ret) override {
    ck_.on_spte_change_result(c, ret);
    if (record_ && ret)
      add(TraceEvent::Kind::Instant, "refused",
          fmt::format("change refused: gfn={:#x} {} = {}", c.gfn.v, level_name(c.level), ret));
  }
  void on_seamcall(tdx::Leaf leaf, uint64_t gpa, int lvl, tdx::Status st) override {
    seamcall(leaf, gpa, lvl, st, "");
  }
  void on_injected_seamcall(tdx::Leaf leaf, uint64_t gpa, int lvl, tdx::Status st) override {
    seamcall(leaf, gpa, lvl, st, " (injected)");
  }
  void on_bug_site(Site s, bool bugged_now) override {
    ck_.on_bug_site(s, bugged_now);
    if (record_)
      add(TraceEvent::Kind::Instant, std::string(site_info(s).id),
          fmt::format("{} {}: {}{}", bug_kind_name(site_info(s).kind), site_info(s).id, site_info(s).text,
                      bugged_now ? " (VM bugged)" : ""));
  }
  void on_engine_event(int thread, sync::EngineEvent e, const void* obj) override {
    if (!record_) return;
    const auto it = names_.find(obj);
    const std::string what = it != names_.end() ? it->second : "";
    using E = sync::EngineEvent;
    switch (e) {
      case E::LockRead: add(TraceEvent::Kind::Begin, what + " (read)", what + " read_lock"); break;
      case E::LockWrite: add(TraceEvent::Kind::Begin, what + " (write)", what + " write_lock"); break;
      case E::UnlockRead: add(TraceEvent::Kind::End, what + " (read)", what + " read_unlock"); break;
      case E::UnlockWrite: add(TraceEvent::Kind::End, what + " (write)", what + " write_unlock"); break;
      case E::Blocked: add(TraceEvent::Kind::Instant, "blocked", "blocked" + (what.empty() ? "" : " on " + what)); break;
      case E::ThreadStart: add(TraceEvent::Kind::Instant, "start", "thread starts"); break;
      case E::ThreadEnd: add(TraceEvent::Kind::Instant, "end", "thread ends"); break;
      case E::RcuReadLock: add(TraceEvent::Kind::Begin, "rcu_read_lock", "rcu_read_lock"); break;
      case E::RcuReadUnlock: add(TraceEvent::Kind::End, "rcu_read_lock", "rcu_read_unlock"); break;
      case E::CallRcu: add(TraceEvent::Kind::Instant, "call_rcu", fmt::format("call_rcu #{}", queued_rcu(obj))); break;
      case E::RcuCallback:
        add(TraceEvent::Kind::Instant, "rcu callback",
            fmt::format("grace period over for call_rcu #{}: its callback runs", ran_rcu(obj)));
        break;
    }
  }

 private:
  void seamcall(tdx::Leaf leaf, uint64_t gpa, int lvl, tdx::Status st, const char* mark) {
    if (record_)
      add(TraceEvent::Kind::Complete, tdx::leaf_name(leaf),
          fmt::format("seamcall {} gpa={:#x} level={} = {}{}", tdx::leaf_name(leaf), gpa, lvl, tdx::status_str(st),
                      mark));
  }
  void add(TraceEvent::Kind k, std::string name, std::string text) {
    const int t = engine_ ? engine_->current() : -1;
    events_.push_back({engine_ ? engine_->steps() : 0, t, k, std::move(name), std::move(text)});
  }

  // call_rcu and its callback name the same head (which may be reused once
  // the callback ran): number them in the order they were queued.
  size_t queued_rcu(const void* head) { return rcu_ids_[head] = ++rcu_next_; }
  size_t ran_rcu(const void* head) {
    const auto it = rcu_ids_.find(head);
    if (it == rcu_ids_.end()) return 0;
    const size_t id = it->second;
    rcu_ids_.erase(it);
    return id;
  }

  Checker& ck_;
  Vm& vm_;
  bool record_;
  std::map<const void*, size_t> rcu_ids_;
  size_t rcu_next_ = 0;
  sync::DetEngine* engine_ = nullptr;
  std::map<const void*, std::string> names_;
  std::vector<TraceEvent> events_;
};

// An execution that deadlocked or livelocked leaves its virtual threads
// parked inside MMU code for good, holding locks and pointers into the VM:
// neither the VM nor the engine can be torn down safely. They are kept here,
// reachable until the process exits and never destroyed, so that a leak
// checker sees a deliberate graveyard and not a leak.
struct Parked {
  std::unique_ptr<sync::DetEngine> engine;
  std::unique_ptr<Vm> vm;
  std::unique_ptr<Checker> ck;
  std::unique_ptr<FaultInjector> inject;
};

void park_forever(std::unique_ptr<sync::DetEngine> engine, std::unique_ptr<Vm> vm, std::unique_ptr<Checker> ck,
                  std::unique_ptr<FaultInjector> inject) {
  static std::mutex lock;
  static auto* graveyard = new std::vector<Parked>();
  std::lock_guard g(lock);
  graveyard->push_back({std::move(engine), std::move(vm), std::move(ck), std::move(inject)});
}

void first_failure(ExecResult& r, const Checker& ck) {
  if (ck.ok() || !r.invariant.empty()) return;
  r.ok = false;
  const Violation& v = ck.violations().front();
  r.invariant = v.invariant;
  r.detail = v.detail;
  r.where = v.op;
}

}  // namespace

ExecResult run_execution(const Scenario& s, sync::DetStrategy& strategy, const ExecConfig& cfg) {
  ExecResult r;
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
  // Every injectable point consults the engine through the injector.
  auto inject = std::make_unique<FaultInjector>();
  auto vm = std::make_unique<Vm>(vc, inject.get());
  auto ck = std::make_unique<Checker>(*vm);

  // Setup, the racing part and teardown all run under the engine, traced,
  // with failure points live: a failure injected while the TD is built or
  // destroyed is as much a part of the story as one in the race.
  Tracer tracer(*ck, *vm, cfg.trace);
  vm->mmu().set_observer(&tracer);
  vm->bugs().set_observer(&tracer);
  vm->module()->set_observer(&tracer);
  auto engine = std::make_unique<sync::DetEngine>(strategy, cfg.limits);
  tracer.set_engine(engine.get());
  engine->set_sink(&tracer);
  auto finish_counts = [&] {
    r.steps = engine->steps();
    r.decisions = engine->decisions();
    r.preemptions = engine->preemptions();
    r.fails_fired = 0;
    for (size_t k = 0; k < sync::kFailKindCount; k++) {
      r.fired_by_kind[k] = engine->fails_fired(static_cast<sync::FailKind>(k));
      r.fails_fired += r.fired_by_kind[k];
    }
    r.choices.clear();
    for (const auto& d : engine->decision_log())
      if (d.chosen) r.choices[d.key] = d.chosen;
    r.thread_names.clear();
    for (int i = 0; i < engine->thread_count(); i++) r.thread_names.push_back(engine->thread_name(i));
  };
  auto abandon = [&](std::string invariant) {
    finish_counts();
    r.ok = false;
    r.aborted = true;
    r.invariant = std::move(invariant);
    r.detail = engine->abort_reason();
    r.trace = tracer.take();
    park_forever(std::move(engine), std::move(vm), std::move(ck), std::move(inject));
  };
  auto aborted_as = [&](const char* phase) {
    return engine->abort_reason().rfind("deadlock", 0) == 0 ? std::string("deadlock") + phase
                                                            : std::string("livelock") + phase;
  };

  std::string setup_error;
  engine->spawn("setup", [&] {
    auto fail = [&](const std::string& what, int rc) { setup_error = fmt::format("{} returned {}", what, rc); };
    if (int rc = vm->create()) return fail("create", rc);
    for (const auto& sl : s.slots)
      if (int rc = vm->add_memslot(sl.id, sl.gpa, sl.size, sl.flags)) return fail("add_memslot", rc);
    if (s.finalize_in_setup)
      if (int rc = vm->finalize()) return fail("finalize", rc);
    if (s.private_pages)
      if (int rc = vm->set_memory_attributes(s.slots[0].gpa, s.private_pages * kPageSize, true))
        return fail("set_memory_attributes", rc);
    for (const auto& op : s.setup)
      if (int rc = run_op(*vm, op)) return fail(op.describe(), rc);
    vm->kick_all_vcpus_out();
  });
  if (!engine->run()) {
    abandon(aborted_as(" in setup"));
    return r;
  }
  // A setup step that fails without an injected failure is the scenario's
  // fault; with one, KVM said no to the VMM, and the TD is torn down as the
  // VMM would do next.
  const bool setup_refused = !setup_error.empty();
  bool injected_in_setup = false;
  for (size_t k = 0; k < sync::kFailKindCount; k++)
    injected_in_setup |= engine->fails_fired(static_cast<sync::FailKind>(k)) != 0;
  if (setup_refused && !injected_in_setup) {
    finish_counts();
    r.ok = false;
    r.invariant = "setup";
    r.detail = setup_error;
    r.trace = tracer.take();
    return r;
  }
  ck->check(setup_refused ? "setup (refused: " + setup_error + ")" : std::string("setup"));
  first_failure(r, *ck);

  if (!setup_refused && r.ok) {
    vm->set_vcpus_threaded(true);
    for (const auto& t : s.threads) {
      engine->spawn(t.name, [&vm, &t] {
        std::vector<int> vcpus;
        for (const auto& op : t.ops) {
          if (run_op(*vm, op) == -EIO) break;  // the VM died: stop this thread
          if (op.kind == OpKind::Access) vcpus.push_back(op.vcpu);
        }
        // KVM_RUN returns: the vCPU is out of guest mode for good.
        for (int v : vcpus) vm->vcpu_exit(v);
      });
    }
    if (!engine->run()) {
      abandon(aborted_as(""));
      return r;
    }
    if (!engine->violations().empty() && r.invariant.empty()) {
      r.ok = false;
      r.invariant = "use_after_grace_period";
      r.detail = engine->violations().front();
      r.where = "the interleaved part";
    }
    vm->set_vcpus_threaded(false);
    ck->check("the threads");
  }
  engine->spawn("teardown", [&] { vm->destroy(); });
  if (!engine->run()) {
    abandon(aborted_as(" in teardown"));
    return r;
  }
  finish_counts();
  tracer.set_engine(nullptr);
  engine->set_sink(nullptr);
  ck->check_end_of_life();
  first_failure(r, *ck);
  for (size_t i = 0; i < TransitionCounts::kClasses; i++) r.classes[i] = ck->transitions().count(i) != 0;
  for (size_t i = 0; i < kSiteCount; i++) r.sites[i] = vm->bugs().hits(static_cast<Site>(i));
  r.rows = ck->transition_rows();
  r.trace = tracer.take();
  vm->mmu().set_observer(ck.get());
  vm->bugs().set_observer(ck.get());
  vm->module()->set_observer(ck.get());
  return r;
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
