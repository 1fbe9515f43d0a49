// SPDX-License-Identifier: MIT
// Computing the transition table: explorations of every built-in scenario and
// small runs of the default workload, each with and without injected failures,
// folded row by row; then the rows nobody reached, driven directly.
#include "report/table.h"

#include <fmt/format.h>

#include <chrono>

#include "explore/drive.h"
#include "explore/explorer.h"
#include "explore/scenario.h"
#include "mmu/design.h"
#include "report/summary.h"
#include "tdx/status.h"
#include "vm/vm.h"
#include "vm/direct_mmu.h"
#include "workload/plain_explored.h"
#include "workload/runner.h"
#include "workload/shared_life.h"

namespace mirrormmu::report {

namespace {

RowKind fold(spte::Kind k) {
  switch (k) {
    case spte::Kind::Leaf: return RowKind::Leaf;
    case spte::Kind::NonLeaf: return RowKind::NonLeaf;
    case spte::Kind::Mmio: return RowKind::Mmio;
    case spte::Kind::NonPresent:
    case spte::Kind::Frozen: break;
  }
  return RowKind::NonPresent;
}

spte::Kind unfold(RowKind k) {
  switch (k) {
    case RowKind::Leaf: return spte::Kind::Leaf;
    case RowKind::NonLeaf: return spte::Kind::NonLeaf;
    case RowKind::Mmio: return spte::Kind::Mmio;
    case RowKind::NonPresent: break;
  }
  return spte::Kind::NonPresent;
}

// Folds one execution's or run's rows into the design's table.
class Folder {
 public:
  explicit Folder(DesignTable& t) : t_(t) {}

  void add(const TransitionRows& rows, const Evidence& ev) {
    if (rows.empty()) return;
    for (size_t c = 0; c < TransitionCounts::kClasses; c++) {
      const TransitionRow& in = rows[c];
      if (!in.attempts && in.sites.empty()) continue;
      RowResult& out = t_.rows[row_of_class(c)];
      if (in.attempts) {
        out.attempts += in.attempts;
        out.by_source[ev.source] += in.attempts;
        if (out.reached.empty() || prefer(ev, out.reached)) out.reached = ev;
      }
      for (const auto& [err, n] : in.refused) {
        out.refused[err] += n;
        if (out.refused_first.empty() || prefer(ev, out.refused_first)) out.refused_first = ev;
      }
      add_sites(out.sites, in.sites, ev);
    }
    add_sites(t_.outside, rows[kRowOutside].sites, ev);
    add_sites(t_.rcu, rows[kRowRcuCallback].sites, ev);
  }

 private:
  // The simplest story is the best evidence: an exact replay over a run, and
  // one without injected failures over one with.
  static bool prefer(const Evidence& a, const Evidence& b) {
    const bool a_replay = a.command.rfind("mirrormmu replay", 0) == 0;
    const bool b_replay = b.command.rfind("mirrormmu replay", 0) == 0;
    if (a_replay != b_replay) return a_replay;
    if (a.injected.empty() != b.injected.empty()) return a.injected.empty();
    return false;
  }
  static void add_sites(std::map<Site, SiteSeen>& out, const std::map<Site, uint64_t>& in, const Evidence& ev) {
    for (const auto& [s, n] : in) {
      SiteSeen& seen = out[s];
      seen.hits += n;
      seen.sources++;
      if (seen.first.empty() || prefer(ev, seen.first)) seen.first = ev;
    }
  }
  DesignTable& t_;
};

std::string injected_in(const explore::ExecResult& r) {
  std::string s;
  for (size_t k = 0; k < sync::kFailKindCount; k++)
    if (r.fired_by_kind[k])
      s += fmt::format("{}{} x{}", s.empty() ? "" : ", ", sync::fail_kind_name(static_cast<sync::FailKind>(k)),
                       r.fired_by_kind[k]);
  return s;
}

void explore_scenarios(const std::string& design, const TableConfig& cfg, DesignTable& t, Folder& fold,
                       const TableProgress& progress) {
  for (const auto& info : explore::builtin_scenarios()) {
    // Two passes: interleavings without failures, then every single injected
    // failure of each kind on the default interleaving and its neighbours.
    for (int pass = 0; pass < 2; pass++) {
      explore::ExploreConfig ec;
      ec.scenario = info.name;
      ec.design = design;
      ec.scale = 1;
      ec.budget = cfg.executions_per_pass;
      ec.preemptions = pass == 0 ? cfg.preemptions : 0;
      if (pass == 1) ec.fail_budget.fill(1);
      ec.shrink = false;
      ec.max_failures = SIZE_MAX;
      ec.on_execution = [&](const explore::ExecResult& r, const explore::Schedule& s) {
        t.executions++;
        fold.add(r.rows, {info.name, "mirrormmu replay '" + s.str() + "'", injected_in(r)});
      };
      std::string error;
      if (progress) progress(fmt::format("{}: explore {}{}", design, info.name, pass ? " with failures" : ""));
      if (!explore::explore(ec, nullptr, &error)) {
        if (pass == 0) t.skipped.push_back(info.name + ": " + error);
        break;
      }
    }
  }
}

void run_one(const WorkloadConfig& wc, const std::string& source, const std::string& injected, DesignTable& t,
             Folder& fold) {
  RunOutcome out = run_workload(wc);
  if (!out.checker) return;
  t.runs++;
  // An injection that never fired reached nothing of its own.
  if (out.result.exit_code == 2) return;
  fold.add(out.checker->transition_rows(), {source, replay_command(wc), injected});
}

void run_workloads(const std::string& design, const TableConfig& cfg, DesignTable& t, Folder& fold,
                   const TableProgress& progress) {
  WorkloadConfig base;
  base.design = design;
  base.gib = cfg.gib;
  base.vcpus = 2;
  base.threads = false;  // exactly replayable from the command line
  base.bug_sites_are_failures = true;
  // The table wants the transitions and sites a run reaches, which the
  // checker counts as they happen; the invariants once at the end are
  // enough (a run that breaks one still shows what it reached).
  base.check_mode = CheckMode::Final;
  std::vector<WorkloadConfig> plain;
  for (int variant = 0; variant < 3; variant++) {
    WorkloadConfig wc = base;
    wc.huge_pages = variant >= 1;
    wc.dynamic_pamt = variant == 2;
    VmConfig vc;
    std::string err;
    parse_design_spec(design, &vc.design, &vc.what_if, &err);
    vc.huge_pages = wc.huge_pages;
    if (std::string why = vm_config_refusal(vc); !why.empty()) {
      t.skipped.push_back(fmt::format("td-life{}{}: {}", wc.huge_pages ? " --huge-pages" : "",
                                      wc.dynamic_pamt ? " --dpamt" : "", why));
      continue;
    }
    plain.push_back(wc);
  }
  if (progress) progress(design + ": run td-life");
  for (const auto& wc : plain) run_one(wc, "td-life", "", t, fold);
  // Every status every leaf can return, at the leaf's first call, on the
  // richest configuration the design runs.
  if (plain.empty() || !cfg.inject_runs) return;
  if (progress) progress(design + ": run td-life with every injectable SEAMCALL status");
  for (size_t l = 0; l < tdx::kLeafCount; l++) {
    const auto leaf = static_cast<tdx::Leaf>(l);
    std::vector<std::string> seen;
    for (const auto& e : tdx::leaf_errors(leaf)) {
      const tdx::Status st = tdx::with_operand(e.base, e.operand);
      const std::string spec = fmt::format("{}#1={}", tdx::leaf_name(leaf), tdx::status_str(st));
      WorkloadConfig wc = plain.back();
      wc.seamcall_injections.push_back({{static_cast<uint32_t>(leaf), 1, st}, spec});
      run_one(wc, "td-life+inject", spec, t, fold);
    }
  }
  for (const auto& [name, point] : std::vector<std::pair<std::string, InjectPoint>>{
           {"cache-topup", InjectPoint::CacheTopup},
           {"split-table", InjectPoint::SplitTable},
           {"pamt-pair", InjectPoint::PamtPair}}) {
    WorkloadConfig wc = plain.back();
    wc.alloc_injections.push_back({{point, 1}, name + "#1"});
    run_one(wc, "td-life+inject", name + "#1", t, fold);
  }
}

void drive_unreached(const std::string& design, DesignTable& t, const TableProgress& progress) {
  if (progress) progress(design + ": drive the rows nothing reached");
  for (size_t i = 0; i < kTableRows; i++) {
    RowResult& row = t.rows[i];
    if (row.attempts) continue;
    const RowKey k = row_key(i);
    const explore::DriveOutcome d =
        explore::drive_transition(design, unfold(k.old_kind), unfold(k.new_kind), k.shared, k.mirror);
    row.drive.attempted = true;
    row.drive.outcome = d.outcome;
    row.drive.sites = d.sites;
    row.drive.violations = d.violations;
  }
}

}  // namespace

const char* row_kind_name(RowKind k) {
  switch (k) {
    case RowKind::NonPresent: return "non-present";
    case RowKind::Mmio: return "MMIO";
    case RowKind::Leaf: return "leaf";
    case RowKind::NonLeaf: return "non-leaf";
  }
  return "?";
}

std::string RowKey::name() const {
  return fmt::format("{} -> {}, {}, {}", row_kind_name(old_kind), row_kind_name(new_kind),
                     shared ? "shared" : "exclusive", mirror ? "mirror" : "direct");
}

size_t row_index(const RowKey& k) {
  return ((static_cast<size_t>(k.old_kind) * kRowKinds + static_cast<size_t>(k.new_kind)) * 2 + k.shared) * 2 +
         k.mirror;
}

RowKey row_key(size_t i) {
  RowKey k{};
  k.mirror = i % 2;
  i /= 2;
  k.shared = i % 2;
  i /= 2;
  k.new_kind = static_cast<RowKind>(i % kRowKinds);
  k.old_kind = static_cast<RowKind>(i / kRowKinds);
  return k;
}

size_t row_of_class(size_t c) {
  const TransitionClass tc = TransitionCounts::at(c);
  return row_index({fold(tc.old_kind), fold(tc.new_kind), tc.shared, tc.mirror});
}

std::optional<DesignTable> compute_mmu_table(const std::string& mmu, const TableConfig& cfg,
                                             const TableProgress& progress, std::string* error) {
  if (std::string why = direct_mmu_refusal(mmu); !why.empty()) {
    if (error) *error = why;
    return std::nullopt;
  }
  const auto factory = find_direct_mmu(mmu);
  const auto t0 = std::chrono::steady_clock::now();
  DesignTable t;
  t.design = factory(1)->name();  // "kernel 6.12.117": the tree, not just its kind
  Folder fold(t);
  for (const auto& sc : plain_scenarios()) {
    explore::ExploreConfig ec;
    ec.scenario = plain_source_name(mmu, sc.name);
    ec.budget = cfg.executions_per_pass;
    ec.preemptions = cfg.preemptions;
    ec.shrink = false;
    ec.max_failures = SIZE_MAX;
    ec.on_execution = [&](const explore::ExecResult& r, const explore::Schedule& s) {
      t.executions++;
      const std::string cmd = "mirrormmu replay '" + s.str() + "'";
      fold.add(r.rows, {"plain:" + sc.name, cmd, ""});
      if (!r.ok && t.failures.size() < 8) t.failures.push_back(r.invariant + ": " + r.detail + " (" + cmd + ")");
    };
    if (progress) progress(fmt::format("{}: explore {}", mmu, sc.name));
    std::string err;
    if (!explore::explore(ec, nullptr, &err)) t.skipped.push_back(sc.name + ": " + err);
  }
  for (const bool threads : {false, true})
    for (const bool huge : {false, true}) {
      SharedLifeConfig c;
      c.gib = cfg.gib;
      c.vcpus = 2;
      c.iterations = 2;
      c.threads = threads;
      c.huge_pages = huge;
      const std::string cmd = fmt::format("mirrormmu run --workload shared-life --mmu {} --gib {} --vcpus 2 "
                                          "--iterations 2{}{}", mmu, cfg.gib, threads ? "" : " --inline",
                                          huge ? " --huge-pages" : "");
      if (progress) progress(fmt::format("{}: {}", mmu, cmd.substr(10)));
      auto m = factory(c.vcpus);
      const SharedLifeResult r = run_shared_life(*m, c);
      t.runs++;
      TransitionRows rows(kTransitionRows);
      for (size_t i = 0; i < TransitionCounts::kClasses; i++) rows[i].attempts = m->stats().transitions.count(i);
      fold.add(rows, {huge ? "shared-life+2M" : "shared-life", cmd, ""});
      if (!r.failure.empty()) t.failures.push_back(r.failure + " (" + cmd + ")");
    }
  t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return t;
}

std::optional<DesignTable> compute_table(const std::string& design, const TableConfig& cfg,
                                         const TableProgress& progress, std::string* error) {
  std::string d;
  WhatIf w;
  if (!parse_design_spec(design, &d, &w, error)) return std::nullopt;
  const auto t0 = std::chrono::steady_clock::now();
  DesignTable t;
  t.design = design;
  Folder fold(t);
  explore_scenarios(design, cfg, t, fold, progress);
  run_workloads(design, cfg, t, fold, progress);
  if (cfg.drive) drive_unreached(design, t, progress);
  t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return t;
}

}  // namespace mirrormmu::report
