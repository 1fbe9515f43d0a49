// SPDX-License-Identifier: MIT
#include "report/shared_summary.h"

#include <fmt/format.h>

namespace mirrormmu {

std::string format_shared_summary(const SharedLifeConfig& cfg, const SharedLifeResult& r, DirectMmu& mmu) {
  std::string s = fmt::format("shared-life on the {} MMU: {} GiB, {} vCPUs{}, {} dirty-log iterations, seed {}\n",
                              r.mmu, cfg.gib, cfg.vcpus, cfg.threads ? " on threads" : " inline", cfg.iterations,
                              cfg.seed);
  s += fmt::format("  {} phases in {:.2f} s; {} faults ({} spurious, {} retried); {} dirty pages logged; "
                   "{} TLB flush requests\n",
                   r.ops, r.seconds, r.faults, r.spurious, r.retries, r.dirty_pages, mmu.stats().flushes.load());
  s += "  SPTE transitions, from the MMU's own trace (handle_changed_spte):\n";
  const TransitionCounts& t = mmu.stats().transitions;
  for (size_t i = 0; i < TransitionCounts::kClasses; i++)
    if (const uint64_t n = t.count(i)) s += fmt::format("    {:<40} {:>10}\n", TransitionCounts::at(i).name(), n);
  s += fmt::format("  page-table pages left after destruction: {}\n", r.leaked_tables);
  if (!cfg.check) s += "  invariants: NOT checked (--no-check)\n";
  s += r.failure.empty() ? (cfg.check ? "result: OK\n" : "result: ran (unchecked)\n") : "result: FAILED: " + r.failure + "\n";
  return s;
}

std::string format_shared_compare(const SharedLifeConfig& cfg, const std::vector<SharedColumn>& cols) {
  std::string s = fmt::format("shared-life, {} GiB, {} vCPUs in turn, {} dirty-log iterations, seed {}{}\n", cfg.gib,
                              cfg.vcpus, cfg.iterations, cfg.seed, cfg.huge_pages ? ", 2M host pages" : "");
  s += fmt::format("  {:<40}", "");
  for (const auto& c : cols) s += fmt::format(" {:>16}", c.stats_of->name());
  s += "\n";
  size_t differing = 0;
  auto row = [&](const std::string& name, auto get) {
    std::string line = fmt::format("  {:<40}", name);
    bool same = true;
    for (const auto& c : cols) {
      line += fmt::format(" {:>16}", get(c));
      same &= get(c) == get(cols[0]);
    }
    differing += !same;
    s += line + (same ? "" : "   <- differs") + "\n";
  };
  row("result", [](const SharedColumn& c) { return std::string(c.result.failure.empty() ? "OK" : "FAILED"); });
  row("faults", [](const SharedColumn& c) { return std::to_string(c.result.faults); });
  row("spurious faults", [](const SharedColumn& c) { return std::to_string(c.result.spurious); });
  row("retried faults", [](const SharedColumn& c) { return std::to_string(c.result.retries); });
  row("dirty pages logged", [](const SharedColumn& c) { return std::to_string(c.result.dirty_pages); });
  row("TLB flush requests", [](const SharedColumn& c) { return std::to_string(c.stats_of->stats().flushes.load()); });
  row("page-table pages left", [](const SharedColumn& c) { return std::to_string(c.result.leaked_tables); });
  for (size_t i = 0; i < TransitionCounts::kClasses; i++) {
    bool any = false;
    for (const auto& c : cols) any |= c.stats_of->stats().transitions.count(i) != 0;
    if (any)
      row(TransitionCounts::at(i).name(),
          [i](const SharedColumn& c) { return std::to_string(c.stats_of->stats().transitions.count(i)); });
  }
  for (const auto& c : cols)
    if (!c.result.failure.empty()) s += fmt::format("{}: FAILED: {}\n", c.stats_of->name(), c.result.failure);
  s += differing ? fmt::format("{} rows differ\n", differing) : "every row agrees\n";
  return s;
}

nlohmann::json shared_summary_json(const SharedLifeConfig& cfg, const SharedLifeResult& r, DirectMmu& mmu) {
  nlohmann::json j;
  j["workload"] = "shared-life";
  j["mmu"] = r.mmu;
  j["seed"] = cfg.seed;
  j["gib"] = cfg.gib;
  j["vcpus"] = cfg.vcpus;
  j["iterations"] = cfg.iterations;
  j["checked"] = cfg.check;
  j["seconds"] = r.seconds;
  j["faults"] = r.faults;
  j["spurious"] = r.spurious;
  j["retries"] = r.retries;
  j["dirty_pages"] = r.dirty_pages;
  j["flushes"] = mmu.stats().flushes.load();
  j["leaked_tables"] = r.leaked_tables;
  auto& tr = j["transitions"] = nlohmann::json::object();
  for (size_t i = 0; i < TransitionCounts::kClasses; i++)
    if (const uint64_t n = mmu.stats().transitions.count(i)) tr[TransitionCounts::at(i).name()] = n;
  j["ok"] = r.failure.empty();
  if (!r.failure.empty()) j["failure"] = r.failure;
  return j;
}

}  // namespace mirrormmu
