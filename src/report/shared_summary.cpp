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
