// SPDX-License-Identifier: MIT
#include "workload/explored.h"

#include <fmt/format.h>

#include <sstream>
#include <vector>

#include "sync/rcu.h"

namespace mirrormmu {

namespace {
constexpr const char* kPrefix = "workload:";
}

std::string workload_source_name(const WorkloadConfig& c) {
  return fmt::format("{}{}:gib={}:vcpus={}{}{}{}", kPrefix, c.name, c.gib, c.vcpus, c.huge_pages ? ":huge" : "",
                     c.dynamic_pamt ? ":dpamt" : "",
                     c.external_spt_policy == ExternalSptPolicy::TdxPool ? ":tdx-pool" : "");
}

std::optional<WorkloadConfig> parse_workload_source(const std::string& name, std::string* error) {
  auto bad = [&](const std::string& why) -> std::optional<WorkloadConfig> {
    if (error) *error = fmt::format("workload source '{}': {}", name, why);
    return std::nullopt;
  };
  if (name.rfind(kPrefix, 0) != 0) return bad("does not start with 'workload:'");
  std::vector<std::string> parts;
  std::stringstream ss(name.substr(std::string(kPrefix).size()));
  for (std::string p; std::getline(ss, p, ':');) parts.push_back(p);
  if (parts.empty() || !find_workload(parts[0])) return bad("no such workload");
  WorkloadConfig c;
  c.name = parts[0];
  c.threads = true;
  for (size_t i = 1; i < parts.size(); i++) {
    const std::string& p = parts[i];
    try {
      if (p.rfind("gib=", 0) == 0) {
        size_t used = 0;
        c.gib = std::stod(p.substr(4), &used);
        if (used != p.size() - 4 || !(c.gib > 0) || c.gib > 64) return bad("gib must be in (0, 64]");
      } else if (p.rfind("vcpus=", 0) == 0) {
        if (p.size() > 8 || p.find_first_not_of("0123456789", 6) != std::string::npos) return bad("bad vcpus");
        c.vcpus = std::stoi(p.substr(6));
        if (c.vcpus < 1 || c.vcpus > 8) return bad("vcpus must be in 1..8");
      } else if (p == "huge") {
        c.huge_pages = true;
      } else if (p == "dpamt") {
        c.dynamic_pamt = true;
      } else if (p == "tdx-pool") {
        c.external_spt_policy = ExternalSptPolicy::TdxPool;
      } else {
        return bad("unknown part '" + p + "'");
      }
    } catch (...) {
      return bad("bad number in '" + p + "'");
    }
  }
  return c;
}

explore::ExecResult run_workload_execution(const WorkloadConfig& cfg, sync::DetStrategy& strategy,
                                           const explore::ExecConfig& ec) {
  sync::RcuThread rcu_thread;
  WorkloadConfig c = cfg;
  c.design = ec.design;
  const WorkloadInfo* w = find_workload(c.name);
  VmConfig vc = w->vm_config(c);
  std::string err;
  (void)parse_design_spec(ec.design, &vc.design, &vc.what_if, &err);  // checked when resolved
  explore::Harness h(vc, strategy, ec);
  // Injected failures make operations fail; what they break is judged by
  // the invariants and the sites, not by the error codes.
  bool budgeted = false;
  for (uint32_t b : ec.limits.fail_budget) budgeted |= b != 0;
  Driver d(h.vm(), &h.checker(), budgeted);
  d.set_threads(true);
  d.set_harness(&h);
  std::mt19937_64 rng(c.seed);
  w->run(d, c, rng);
  if (d.abandoned()) return h.result();
  return h.finish();
}

namespace {

std::optional<explore::ExecutionSource> resolve(const std::string& name, const std::string& design,
                                                std::string* error) {
  auto c = parse_workload_source(name, error);
  if (!c) return std::nullopt;
  VmConfig vc = find_workload(c->name)->vm_config(*c);
  if (!parse_design_spec(design, &vc.design, &vc.what_if, error)) return std::nullopt;
  if (std::string why = vm_config_refusal(vc); !why.empty()) {
    if (error) *error = name + ": " + why;
    return std::nullopt;
  }
  WorkloadConfig cfg = *c;
  return explore::ExecutionSource{[cfg](sync::DetStrategy& st, const explore::ExecConfig& ec) {
                                    return run_workload_execution(cfg, st, ec);
                                  },
                                  cfg.vcpus + 1};
}

}  // namespace

void register_workload_source() { explore::register_source(kPrefix, &resolve); }

}  // namespace mirrormmu
