// SPDX-License-Identifier: MIT
// The options that describe a workload run, shared by `run` and `compare`.
#include <fmt/format.h>

#include <cmath>

#include "cli/common.h"
#include "vm/direct_mmu.h"
#include "mmu/design.h"
#include "tdx/sept_tree.h"
#include "tdx/status.h"
#include "workload/workload.h"

namespace mirrormmu::cli {

std::string designs_help() {
  std::string s = fmt::format("hook design (default {}), one of:", kDefaultDesign);
  for (const auto& d : designs())
    s += fmt::format("\n  {:<22} {}\n  {:<22}   reproduces: {}", d.name, d.description, "", d.posting);
  return s;
}

std::string what_ifs_help() {
  std::string s = "comma-separated code variants the seed threads ask about:";
  for (const auto& w : what_ifs()) s += fmt::format("\n  {:<26} {}", w.name, w.help);
  return s;
}

namespace {

std::string workloads_help() {
  std::string s = "workload, one of:";
  for (const auto& w : workloads()) s += fmt::format("\n  {:<12} {}", w.name, w.description);
  s += fmt::format("\n  {:<12} {}", "shared-life",
                   "a plain VM's shared memory (populate, dirty logging, zaps, memslot churn) on --mmu model|kernel");
  return s;
}

// An option taking one of a few names. CLI11's CheckedTransformer prints the
// mapped values in its help and errors, which for small enums are raw bytes.
template <class T>
CLI::Option* add_choice(CLI::App* cmd, const std::string& flag, T& target,
                        std::vector<std::pair<std::string, T>> choices, const std::string& help) {
  std::string names;
  for (const auto& [name, v] : choices) names += (names.empty() ? "" : "|") + name;
  std::string deflt;
  for (const auto& [name, v] : choices)
    if (v == target) deflt = name;
  auto set = [&target, choices, flag, names](const std::string& in) {
    for (const auto& [name, v] : choices)
      if (name == in) {
        target = v;
        return;
      }
    throw CLI::ValidationError(flag, fmt::format("'{}' is not one of {}", in, names));
  };
  return cmd->add_option_function<std::string>(flag, set, help)->option_text(
      fmt::format("{} (default {})", names, deflt));
}

// Splits "NAME#N" into NAME (left in `name`) and N (default 1); `what` says
// what N counts, for the error.
uint64_t take_ordinal(std::string& name, const char* flag, const std::string& spec, const char* what) {
  const size_t hash = name.find('#');
  if (hash == std::string::npos) return 1;
  const std::string n = name.substr(hash + 1);
  name.resize(hash);
  if (n.empty() || n.size() > 9 || n.find_first_not_of("0123456789") != std::string::npos || std::stoull(n) == 0)
    throw CLI::ValidationError(flag, fmt::format("'{}': the {} number must be 1 to 999999999", spec, what));
  return std::stoull(n);
}

// --inject LEAF[#N]=STATUS, N counting that leaf's calls from 1.
WorkloadConfig::SeamcallInjection parse_injection(const std::string& spec) {
  const size_t eq = spec.find('=');
  if (eq == std::string::npos)
    throw CLI::ValidationError("--inject", fmt::format("'{}': expected LEAF[#N]=STATUS", spec));
  std::string leaf_part = spec.substr(0, eq);
  const std::string status_part = spec.substr(eq + 1);
  const uint64_t ordinal = take_ordinal(leaf_part, "--inject", spec, "call");
  const auto leaf = tdx::leaf_by_name(leaf_part);
  if (!leaf)
    throw CLI::ValidationError("--inject", fmt::format("'{}': no SEAMCALL leaf named '{}'", spec, leaf_part));
  const auto& errors = tdx::leaf_errors(*leaf);
  if (errors.empty())
    throw CLI::ValidationError("--inject", fmt::format("'{}': failures of {} are not injected", spec, leaf_part));
  const auto status = tdx::injectable_status(*leaf, status_part);
  if (!status) {
    std::string valid;
    for (const auto& e : errors) {
      const std::string name = tdx::status_name(e.base);
      if (valid.find(name) == std::string::npos) valid += (valid.empty() ? "" : ", ") + name;
    }
    throw CLI::ValidationError("--inject", fmt::format("'{}': {} cannot return '{}' (it can return: {})", spec,
                                                       leaf_part, status_part, valid));
  }
  return {{static_cast<uint32_t>(*leaf), ordinal, *status}, spec};
}

const std::vector<std::pair<std::string, InjectPoint>>& alloc_sites() {
  static const std::vector<std::pair<std::string, InjectPoint>> s = {
      {"cache-topup", InjectPoint::CacheTopup}, {"split-table", InjectPoint::SplitTable},
      {"pamt-pair", InjectPoint::PamtPair}};
  return s;
}

// --inject-alloc SITE[#N].
WorkloadConfig::AllocInjection parse_alloc_injection(const std::string& spec) {
  std::string site = spec;
  const uint64_t ordinal = take_ordinal(site, "--inject-alloc", spec, "allocation");
  std::string names;
  for (const auto& [name, point] : alloc_sites()) {
    if (name == site) return {{point, ordinal}, spec};
    names += (names.empty() ? "" : ", ") + name;
  }
  throw CLI::ValidationError("--inject-alloc", fmt::format("'{}': no allocation site '{}' (sites: {})", spec, site, names));
}

}  // namespace

void add_workload_options(CLI::App* cmd, WorkloadConfig& cfg) {
  cmd->add_option("--workload", cfg.name, workloads_help())->capture_default_str();
  cmd->add_option("--seed", cfg.seed, "random seed (printed first; replays the run)")
      ->check(CLI::Validator(
          [](std::string& v) {
            // CLI11 reads "-1" into an unsigned as 2^64-1.
            return v.find('-') == std::string::npos ? std::string() : "a seed is a number from 0 to 2^64-1";
          },
          "UINT64"))
      ->capture_default_str();
  cmd->add_option("--gib", cfg.gib, "guest RAM of the TD in GiB (fractions allowed)")->capture_default_str();
  cmd->add_option("--vcpus", cfg.vcpus, "number of vCPUs")->check(CLI::Range(1, 64))->capture_default_str();
  cmd->add_option("--ept-levels", cfg.ept_levels, "EPT/S-EPT levels (4 or 5)")
      ->check(CLI::IsMember({4, 5}))
      ->capture_default_str();
  cmd->add_option("--resched-interval", cfg.resched_interval,
                  "force a yield every N iterator steps in long walks (0: only on contention)");
  cmd->add_flag("--huge-pages", cfg.huge_pages,
                "map private memory with 2M pages once the TD runs (demoted on 4K accepts and conversions); "
                "the design must be able to split them");
  cmd->add_flag("!--no-eager-split", cfg.eager_page_split,
                "do not split huge pages when dirty logging starts (write faults split them)");
  cmd->add_flag("--dpamt", cfg.dynamic_pamt,
                "Dynamic PAMT: 4K private and S-EPT pages need a PAMT page pair per 2M region");
  add_choice<bool>(cmd, "--tdx-module", cfg.enhanced_demote_interruptibility, {{"1.5.28", true}, {"1.5.24", false}},
                   "TDX module to model: 1.5.28 (enumerates ENHANCED_DEMOTE_INTERRUPTIBILITY) or 1.5.24 "
                   "(DEMOTE can return TDX_INTERRUPTED_RESTARTABLE, so KVM keeps private memory at 4K)");
  add_choice<ExternalSptPolicy>(
      cmd, "--external-spt", cfg.external_spt_policy,
      {{"kvm-cache", ExternalSptPolicy::KvmCache}, {"tdx-pool", ExternalSptPolicy::TdxPool},
       {"mixed", ExternalSptPolicy::Mixed}},
      "who allocates sp->external_spt: kvm-cache (vCPU cache, per-VM for splits), tdx-pool "
      "(TDX pre-allocates) or mixed (seed 003: faults from TDX's pool, splits from a fresh "
      "zeroed page); the MMU frees it either way");
  add_choice<SplitAlloc>(cmd, "--split-alloc", cfg.split_alloc,
                         {{"prefilled", SplitAlloc::Prefilled}, {"unfilled", SplitAlloc::Unfilled}},
                         "what a table allocated for a split holds before it is written: prefilled "
                         "(SHADOW_NONPRESENT_VALUE) or unfilled (the checker flags any entry left unwritten)");
  cmd->add_option_function<std::string>(
      "--what-if",
      [&cfg](const std::string& v) {
        std::string error;
        if (!parse_what_ifs(v, &cfg.what_if, &error)) throw CLI::ValidationError(error);
      },
      what_ifs_help());
  cmd->add_option_function<std::vector<std::string>>(
         "--inject",
         [&cfg](const std::vector<std::string>& specs) {
           for (const auto& s : specs) cfg.seamcall_injections.push_back(parse_injection(s));
         },
         "LEAF[#N]=STATUS: the N-th call (default 1) of a SEAMCALL leaf returns STATUS instead of running, "
         "e.g. TDH.MEM.PAGE.DEMOTE#1=TDX_EPT_ENTRY_STATE_INCORRECT; STATUS must be one the leaf can "
         "return (TDX_OPERAND_BUSY|SEPT_TREE names the operand too); repeatable, and the same in every "
         "compare column")
      ->option_text("LEAF[#N]=STATUS");
  cmd->add_option_function<std::vector<std::string>>(
         "--inject-alloc",
         [&cfg](const std::vector<std::string>& specs) {
           for (const auto& s : specs) cfg.alloc_injections.push_back(parse_alloc_injection(s));
         },
         "SITE[#N]: the N-th allocation (default 1) at SITE fails with -ENOMEM: cache-topup (a vCPU's MMU "
         "caches before a fault), split-table (the table for a huge-page split), pamt-pair (a Dynamic PAMT "
         "page-pair top-up); repeatable")
      ->option_text("SITE[#N]");
  cmd->add_option_function<std::string>(
         "--check",
         [&cfg](const std::string& m) {
           cfg.check = m != "off";
           if (m == "full") cfg.check_mode = CheckMode::Full;
           else if (m == "incremental") cfg.check_mode = CheckMode::Incremental;
           else if (m == "final") cfg.check_mode = CheckMode::Final;
         },
         "how much the checker looks at after each operation: incremental (default: what the operation "
         "changed, recorded as it ran, plus the page stats, pool, TLBs and bug sites; the whole guest when the "
         "changes outgrow the last full pass, and at the end), full (the whole guest every time), final (only "
         "the books after each operation, the whole guest at the end), off (nothing but the bug sites)")
      ->check(CLI::IsMember({"incremental", "full", "final", "off"}))
      ->option_text("incremental|full|final|off");
  cmd->add_option("--full-check-every", cfg.full_check_every,
                  "with --check incremental, also check the whole guest every N operations (0: when the "
                  "incremental checks since the last full pass saw more entries than it did)")
      ->check(CLI::Range(uint64_t{0}, uint64_t{1} << 40));
  cmd->add_flag_callback("--no-check", [&cfg] { cfg.check = false; }, "the same as --check off");
  cmd->add_flag("!--inline", cfg.threads,
                "run every operation on this thread, one after another (exactly replayable); by default "
                "vCPUs run on their own threads (native engine)");
}

SharedLifeConfig shared_life_options(CLI::App* cmd, const WorkloadConfig& c, int iterations,
                                     const std::vector<std::string>& mmus, const std::string& what) {
  for (const auto& m : mmus)
    if (std::string why = direct_mmu_refusal(m); !why.empty()) usage_error(why);
  // Flags of a TD's life mean nothing to a plain VM: refuse them rather
  // than ignore them.
  for (const char* td_only : {"--design", "--dpamt", "--inject", "--inject-alloc", "--what-if", "--no-eager-split",
                              "--ept-levels", "--resched-interval", "--external-spt", "--split-alloc"})
    if (auto* o = cmd->get_option_no_throw(td_only); o && o->count())
      usage_error(fmt::format("{} has no meaning for {} (a plain VM without a TDX module)", td_only, what));
  if (!(c.gib > 0 && c.gib <= 64)) usage_error(fmt::format("--gib must be in (0, 64] for shared-life, got {}", c.gib));
  if (c.gib * (1ull << 18) < 1) usage_error(fmt::format("--gib {} is less than one page", c.gib));
  SharedLifeConfig sc;
  sc.seed = c.seed;
  sc.gib = c.gib;
  sc.vcpus = c.vcpus;
  sc.iterations = iterations;
  sc.huge_pages = c.huge_pages;
  sc.threads = c.threads;
  sc.check = c.check;
  return sc;
}

namespace {
// MemAvailable from /proc/meminfo, in MiB (0 if unknown).
double available_mib() {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  double kib = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "MemAvailable: %lf kB", &kib) == 1) break;
  std::fclose(f);
  return kib / 1024;
}
}  // namespace

void validate_workload_options(const WorkloadConfig& cfg) {
  const WorkloadInfo* w = find_workload(cfg.name);
  if (!w) usage_error("unknown workload '" + cfg.name + "' (see --help)");
  if (w->refusal)
    if (std::string why = w->refusal(cfg); !why.empty()) usage_error(why);
  if (!(cfg.gib > 0) || cfg.gib > 1024 || !std::isfinite(cfg.gib))
    usage_error(fmt::format("--gib must be in (0, 1024], got {}", cfg.gib));
  // td-life populates in 2 MiB chunks; td-tiny has its own size.
  if (cfg.name != "td-tiny" && !w->guest_gib && cfg.gib * 1024 < 2)
    usage_error(fmt::format("--gib {} is less than 2 MiB, the smallest guest {} can populate", cfg.gib, cfg.name));
  // The model keeps about 32 MiB per GiB of guest (page tables, S-EPT,
  // backing and PAMT books); refuse what this machine cannot hold before
  // anything is allocated.
  const double need_mib = 40 * cfg.gib + 128;
  if (const double avail = available_mib(); avail > 0 && need_mib > avail)
    usage_error(fmt::format("--gib {} needs about {:.0f} MiB of host memory for the model; {:.0f} MiB are available",
                            cfg.gib, need_mib, avail));
  // An S-EPT entry holds a 28-bit frame number (tdx/sept_tree.h): no TD's
  // host pool is larger, whatever this machine has.
  if (const VmConfig v = w->vm_config(cfg); v.type == VmType::Td && v.pool_pages > tdx::sept::kMaxFrames)
    usage_error(fmt::format("--gib {} needs {} host frames; the TDX model's S-EPT entries reach {} (1 TiB)", cfg.gib,
                            v.pool_pages, tdx::sept::kMaxFrames));
}

}  // namespace mirrormmu::cli
