// SPDX-License-Identifier: MIT
#include "report/summary.h"

#include <fmt/format.h>

#include <algorithm>

#include "tdx/status.h"

namespace mirrormmu {

namespace {
// A workload modelled on a selftest is named by its subcommand and sized by
// that test's own flags.
std::string selftest_flags(const WorkloadConfig& c) {
  const SelftestParams& st = c.st;
  const SelftestParams def;
  std::string s;
  // A size in whole GiB as the test's own flag takes it, else with a letter.
  auto gib = [](uint64_t b) { return b % (1ull << 30) ? fmt::format("{}M", b >> 20) : fmt::format("{}", b >> 30); };
  if (c.name == "mmu-stress") {
    s = fmt::format(" -c {} -m {} -s {}", c.vcpus, gib(st.max_mem), gib(st.slot_size));
    return st.hugetlb ? s + " -H" : s;
  }
  if (c.name == "pre-fault-memory") return st.backing != def.backing ? " -s " + st.backing : "";
  if (c.name == "private-mem-conversions") {
    s = fmt::format(" -n {}", c.vcpus);
    if (st.slots != def.slots) s += fmt::format(" -m {}", st.slots);
  } else {
    s = fmt::format(" -v {} -b {}", c.vcpus, st.bytes_per_vcpu);
    if (st.overlap) s += " -o";
  }
  if (st.backing != def.backing) s += " -s " + st.backing;
  if (c.name == "dirty-log-perf") {
    s += fmt::format(" -i {}", st.iterations);
    if (st.slots != def.slots) s += fmt::format(" -x {}", st.slots);
    if (st.write_percent != def.write_percent) s += fmt::format(" -w {}", st.write_percent);
    if (st.random_access) s += " -a";
    if (!st.manual_protect) s += " -g";
    if (st.keep_running) s += " -e";
  }
  return s;
}
}  // namespace

std::string replay_command(const WorkloadConfig& c) {
  const WorkloadInfo* w = find_workload(c.name);
  std::string s = w && w->guest_gib
                      ? fmt::format("mirrormmu run {}{} --seed {} --design {}", c.name, selftest_flags(c), c.seed, c.design)
                      : fmt::format("mirrormmu run --workload {} --seed {} --design {} --gib {} --vcpus {}", c.name,
                                    c.seed, c.design, c.gib, c.vcpus);
  if (c.ept_levels != 4) s += fmt::format(" --ept-levels {}", c.ept_levels);
  if (c.huge_pages) s += " --huge-pages";
  if (!c.eager_page_split) s += " --no-eager-split";
  if (c.dynamic_pamt) s += " --dpamt";
  if (!c.enhanced_demote_interruptibility) s += " --tdx-module 1.5.24";
  if (c.external_spt_policy != ExternalSptPolicy::KvmCache)
    s += fmt::format(" --external-spt {}", external_spt_policy_name(c.external_spt_policy));
  if (c.split_alloc != SplitAlloc::Prefilled) s += fmt::format(" --split-alloc {}", split_alloc_name(c.split_alloc));
  if (c.resched_interval) s += fmt::format(" --resched-interval {}", c.resched_interval);
  std::string what_if;
  for (const auto& w : what_ifs())
    if (c.what_if.*(w.flag)) what_if.append(what_if.empty() ? "" : ",").append(w.name);
  if (!what_if.empty()) s += " --what-if " + what_if;
  // A status with an operand ("TDX_OPERAND_BUSY|SEPT_TREE") needs quotes.
  for (const auto& i : c.seamcall_injections)
    s += i.spec.find('|') == std::string::npos ? " --inject " + i.spec : " --inject '" + i.spec + "'";
  for (const auto& i : c.alloc_injections) s += " --inject-alloc " + i.spec;
  if (!c.threads) s += " --inline";
  if (!c.check) s += " --check off";
  else if (c.check_mode != CheckMode::Incremental) s += fmt::format(" --check {}", check_mode_name(c.check_mode));
  if (c.check && c.check_mode == CheckMode::Incremental && c.full_check_every)
    s += fmt::format(" --full-check-every {}", c.full_check_every);
  return s;
}

namespace {

struct SeamcallRow {
  std::string leaf;
  uint64_t calls;
  std::vector<std::pair<std::string, uint64_t>> statuses;
};

std::vector<SeamcallRow> seamcall_rows(const RunOutcome& r) {
  std::vector<SeamcallRow> rows;
  const tdx::TdxModule* m = r.vm->module();
  if (!m) return rows;
  std::vector<tdx::Leaf> leaves;
  for (size_t i = 0; i < tdx::kLeafCount; i++)
    if (m->stats(static_cast<tdx::Leaf>(i)).calls) leaves.push_back(static_cast<tdx::Leaf>(i));
  // Host SEAMCALLs by architectural leaf number, the guest's TDCALL last.
  std::stable_sort(leaves.begin(), leaves.end(), [](tdx::Leaf a, tdx::Leaf b) {
    const bool ga = a == tdx::Leaf::TDG_MEM_PAGE_ACCEPT, gb = b == tdx::Leaf::TDG_MEM_PAGE_ACCEPT;
    return ga != gb ? gb : tdx::leaf_number(a) < tdx::leaf_number(b);
  });
  for (tdx::Leaf l : leaves) {
    const tdx::TdxModule::LeafStats st = m->stats(l);
    SeamcallRow row{fmt::format("{:>2} {}", tdx::leaf_number(l), tdx::leaf_name(l)), st.calls, {}};
    for (const auto& [status, n] : st.by_status) row.statuses.emplace_back(tdx::status_str(status), n);
    std::sort(row.statuses.begin(), row.statuses.end());
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace

std::string format_page_flow(const PfnPool& pool) {
  std::string out = "page flow by owner         allocated  handed in     freed  handed on  outstanding\n";
  for (size_t i = 1; i < kPageOwnerCount; i++) {
    const auto o = static_cast<PageOwner>(i);
    const auto f = pool.flow(o);
    if (f.allocated + f.transferred_in == 0) continue;
    const int64_t left = int64_t(f.allocated + f.transferred_in) - int64_t(f.freed + f.transferred_out);
    out += fmt::format("  {:<22} {:>10} {:>10} {:>9} {:>10} {:>12}\n", page_owner_name(o), f.allocated,
                       f.transferred_in, f.freed, f.transferred_out, left);
  }
  return out;
}

std::string format_summary(const RunOutcome& r) {
  const WorkloadConfig& c = r.config;
  Vm& vm = *r.vm;
  const Checker* ck = r.checker.get();
  std::string out;
  auto line = [&](const std::string& s) { out += s + "\n"; };

  line(fmt::format("workload {}: {:.6g} GiB of guest RAM, {} vCPUs, {}-level EPT, design {}, host pool {} MiB",
                   c.name, c.gib, c.vcpus, c.ept_levels, design_spec(c.design, c.what_if),
                   (vm.config().pool_pages << kPageShift) >> 20));
  line(fmt::format("private huge pages: {}; external_spt from {}; split tables {}; Dynamic PAMT {}; TDX module {}",
                   c.huge_pages ? "2M" : "off (4K)", external_spt_policy_name(c.external_spt_policy),
                   split_alloc_name(c.split_alloc), c.dynamic_pamt ? "on" : "off",
                   c.enhanced_demote_interruptibility ? "1.5.28" : "1.5.24 (no huge pages: DEMOTE interruptible)"));
  line(fmt::format("engine: {}", c.threads ? fmt::format("native, {} vCPU threads beside the VMM thread", c.vcpus)
                                             : std::string("inline, one thread (exactly replayable)")));
  line(fmt::format("operations: {}, wall time {:.2f} s", r.result.ops, r.result.seconds));
  if (!c.trace_path.empty()) line(fmt::format("trace: {} events in {}", r.result.trace_events, c.trace_path));
  for (size_t i = 0; i < c.seamcall_injections.size() && r.injector; i++)
    line(fmt::format("injected: {} ({})", c.seamcall_injections[i].spec,
                     r.injector->seamcall_rule_fired(i) ? "returned in place of the call" : "never reached"));
  for (size_t i = 0; i < c.alloc_injections.size() && r.injector; i++)
    line(fmt::format("injected: allocation {} ({})", c.alloc_injections[i].spec,
                     r.injector->alloc_rule_fired(i) ? "failed with -ENOMEM" : "never reached"));

  if (ck) {
    line("");
    line("SPTE transitions (old->new, lock, root)          count");
    const auto& t = ck->transitions();
    for (size_t i = 0; i < TransitionCounts::kClasses; i++)
      if (t.count(i)) line(fmt::format("  {:<46} {:>10}", TransitionCounts::at(i).name(), t.count(i)));
    line(fmt::format("  {:<46} {:>10}  ({} classes)", "total", t.total(), t.distinct()));
    line("");
    line("external hooks                                    calls   failed");
    for (size_t k = 0; k < kHookKindCount; k++) {
      const auto kind = static_cast<HookKind>(k);
      line(fmt::format("  {:<46} {:>7} {:>8}", hook_kind_name(kind), ck->hook_calls(kind), ck->hook_failures(kind)));
    }
  }

  const auto rows = seamcall_rows(r);
  if (!rows.empty()) {
    line("");
    line("SEAMCALLs (leaf)                   calls  statuses");
    for (const auto& row : rows) {
      std::string st;
      for (const auto& [name, n] : row.statuses) st += fmt::format("{}{} {}", st.empty() ? "" : ", ", name, n);
      line(fmt::format("  {:<28} {:>8}  {}", row.leaf, row.calls, st));
    }
  }

  line("");
  std::string sites;
  for (size_t i = 0; i < kSiteCount; i++) {
    const auto s = static_cast<Site>(i);
    if (const uint64_t h = vm.bugs().hits(s))
      sites += fmt::format("  {} {} x{}: {}\n", bug_kind_name(site_info(s).kind), site_info(s).id, h,
                           site_info(s).text);
  }
  line(sites.empty() ? "bug/warn sites hit: none" : "bug/warn sites hit:\n" + sites.substr(0, sites.size() - 1));
  if (vm.bugs().bugged()) line(fmt::format("VM bugged by {}", site_info(vm.bugs().first_bug()).id));

  const auto replay_lines = [&] {
    if (!c.threads) return line("replay: " + replay_command(c));
    line("replay: not replayable: native interleaving (vCPU threads interleave differently on each run)");
    WorkloadConfig inline_cfg = c;
    inline_cfg.threads = false;
    line("  the same seed on one thread: " + replay_command(inline_cfg));
    line("  interleavings searched and replayable: mirrormmu explore --scenario ... (see --help)");
  };
  if (ck) {
    const std::string while_running =
        r.result.concurrent_checks ? fmt::format(", and {} times while vCPU threads ran", r.result.concurrent_checks)
                                   : std::string();
    std::string how;
    switch (ck->mode()) {
      case CheckMode::Full:
        how = fmt::format("all invariants over the whole guest after each of {} operations{}", r.result.ops,
                          while_running);
        break;
      case CheckMode::Incremental:
        how = fmt::format("--check incremental: what each of {} operations changed{} ({} entries looked at); the "
                          "whole guest {} times, the last at the end",
                          r.result.ops, while_running, ck->entries_checked(), ck->full_checks());
        break;
      case CheckMode::Final:
        how = fmt::format("--check final: page flow, TLBs and bug sites after each of {} operations, the whole "
                          "guest once at the end",
                          r.result.ops);
        break;
    }
    line(fmt::format("invariant checks: {} evaluated, {} violations ({})", ck->invariants_checked(),
                     ck->violations().size(), how));
    line(fmt::format("pages leaked: {} (kept by the TDX module after failed reclaims: {})", ck->pages_leaked(),
                     ck->pages_leaked_on_purpose()));
    line(fmt::format("mmu_lock: {} shared, {} exclusive acquisitions; remote TLB flushes: {}; yields: {}",
                     vm.mmu().mmu_lock().read_acquisitions(), vm.mmu().mmu_lock().write_acquisitions(),
                     ck->tlb_flushes(), vm.mmu().stats().yields.load()));
    const VmOpStats o = vm.op_stats();
    line(fmt::format("huge pages: {} splits ({} tables allocated for them), {} demotions (PAGE.DEMOTE), "
                     "{} guest 4K accepts inside a 2M mapping",
                     vm.mmu().stats().splits.load(), vm.mmu().stats().split_allocs.load(),
                     vm.tdx() ? vm.tdx()->stats().demotes : 0, o.accept_mismatches));
    out += format_page_flow(vm.pool());
    if (!ck->ok()) {
      line("");
      const Violation& v = ck->violations().front();
      line(fmt::format("FAILED: invariant {} after operation #{} ({}): {}", v.invariant, v.op_index, v.op, v.detail));
      for (size_t i = 1; i < std::min<size_t>(ck->violations().size(), 10); i++) {
        const Violation& w = ck->violations()[i];
        line(fmt::format("  also: {} after #{} ({}): {}", w.invariant, w.op_index, w.op, w.detail));
      }
      replay_lines();
    }
  }
  // With no checker (--check off) the workload's own checks still count.
  if (!r.result.failures.empty()) {
    line("");
    const size_t n = r.result.failures.size();
    for (size_t i = 0; i < std::min<size_t>(n, 10); i++) {
      const Violation& v = r.result.failures[i];
      line(fmt::format("{}{} during operation #{} ({}): {}", i ? "  also: " : "FAILED: ", v.invariant, v.op_index,
                       v.op, v.detail));
    }
    if (n > 10) line(fmt::format("  and {} more", n - 10));
    replay_lines();
  }
  if (!r.result.ok && (!ck || ck->ok()) && vm.bugs().total_hits())
    line(fmt::format("FAILED: {} bug/warn site hit(s), listed above; replay: {}", vm.bugs().total_hits(),
                     replay_command(c)));
  line(r.result.ok ? "result: OK" : "result: FAILED");
  return out;
}

nlohmann::json summary_json(const RunOutcome& r) {
  using nlohmann::json;
  const WorkloadConfig& c = r.config;
  json j;
  j["workload"] = c.name;
  j["seed"] = c.seed;
  j["design"] = c.design;
  j["gib"] = c.gib;
  j["vcpus"] = c.vcpus;
  j["ept_levels"] = c.ept_levels;
  j["operations"] = r.result.ops;
  j["seconds"] = r.result.seconds;
  j["ok"] = r.result.ok;
  j["replay"] = replay_command(c);
  // With vCPU threads the command reruns the seed, not the interleaving.
  j["replay_exact"] = !c.threads;
  j["engine"] = c.threads ? "native" : "inline";
  j["concurrent_checks"] = r.result.concurrent_checks;
  j["figures"] = r.result.figures;
  if (const Checker* ck = r.checker.get()) {
    json t = json::object();
    for (size_t i = 0; i < TransitionCounts::kClasses; i++)
      if (ck->transitions().count(i)) t[TransitionCounts::at(i).name()] = ck->transitions().count(i);
    j["transitions"] = t;
    json h = json::object();
    for (size_t k = 0; k < kHookKindCount; k++) {
      const auto kind = static_cast<HookKind>(k);
      h[hook_kind_name(kind)] = {{"calls", ck->hook_calls(kind)}, {"failed", ck->hook_failures(kind)}};
    }
    j["hooks"] = h;
    j["invariant_checks"] = ck->invariants_checked();
    j["check_mode"] = check_mode_name(ck->mode());
    j["full_checks"] = ck->full_checks();
    j["pages_leaked"] = ck->pages_leaked();
    j["pages_kept_by_tdx"] = ck->pages_leaked_on_purpose();
    json v = json::array();
    for (const auto& x : ck->violations())
      v.push_back({{"invariant", x.invariant}, {"detail", x.detail}, {"op_index", x.op_index}, {"op", x.op}});
    j["violations"] = v;
  } else {
    json v = json::array();
    for (const auto& x : r.result.failures)
      v.push_back({{"invariant", x.invariant}, {"detail", x.detail}, {"op_index", x.op_index}, {"op", x.op}});
    j["violations"] = v;
  }
  json sc = json::object();
  for (const auto& row : seamcall_rows(r)) {
    json st = json::object();
    for (const auto& [name, n] : row.statuses) st[name] = n;
    sc[row.leaf] = {{"calls", row.calls}, {"statuses", st}};
  }
  j["seamcalls"] = sc;
  json sites = json::object();
  for (size_t i = 0; i < kSiteCount; i++)
    if (const uint64_t n = r.vm->bugs().hits(static_cast<Site>(i))) sites[std::string(site_info(static_cast<Site>(i)).id)] = n;
  j["bug_sites"] = sites;
  j["vm_bugged"] = r.vm->bugs().bugged();
  j["mmu_lock"] = {{"shared", r.vm->mmu().mmu_lock().read_acquisitions()},
                   {"exclusive", r.vm->mmu().mmu_lock().write_acquisitions()}};
  j["splits"] = r.vm->mmu().stats().splits.load();
  j["demotes"] = r.vm->tdx() ? r.vm->tdx()->stats().demotes : 0;
  j["accept_mismatches"] = r.vm->op_stats().accept_mismatches;
  json flow = json::object();
  for (size_t i = 1; i < kPageOwnerCount; i++) {
    const auto f = r.vm->pool().flow(static_cast<PageOwner>(i));
    if (f.allocated + f.transferred_in == 0) continue;
    flow[page_owner_name(static_cast<PageOwner>(i))] = {
        {"allocated", f.allocated}, {"freed", f.freed}, {"in", f.transferred_in}, {"out", f.transferred_out}};
  }
  j["page_flow"] = flow;
  return j;
}

}  // namespace mirrormmu
