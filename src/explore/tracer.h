// SPDX-License-Identifier: MIT
// The event trace of an explored execution: everything the checker sees,
// forwarded to it, plus the engine's own events (locks, threads, RCU), each
// with the step and the virtual thread it came from.
#pragma once

#include <fmt/format.h>

#include <map>
#include <string>
#include <vector>

#include "check/checker.h"
#include "explore/execution.h"
#include "spte/spte.h"
#include "sync/det_engine.h"
#include "tdx/status.h"

namespace mirrormmu::explore {

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
  void on_tlb_flush(Gfn s, uint64_t n) override { ck_.on_tlb_flush(s, n); }
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

}  // namespace mirrormmu::explore
