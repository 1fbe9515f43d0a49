// SPDX-License-Identifier: MIT
// The selftests' flags, on `mirrormmu run <test>` and `compare <test>`: the
// letters mean what they mean in the test of that name (-s is a backing
// source in demand-paging and a slot size nowhere here; -m is memslots in
// private-mem-conversions), so each test is its own subcommand.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <map>
#include <thread>

#include "cli/common.h"

namespace mirrormmu::cli {

uint64_t parse_size_arg(const std::string& flag, const std::string& text) {
  const char* s = text.c_str();
  if (!*s || !(s[0] >= '0' && s[0] <= '9')) usage_error(fmt::format("{}: need at least one digit in '{}'", flag, text));
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s, &end, 0);
  if (errno == ERANGE) usage_error(fmt::format("{}: overflow parsing size '{}'", flag, text));
  int shift = 0;
  if (*end) {
    switch (*end | 0x20) {
      case 't': shift = 40; break;
      case 'g': shift = 30; break;
      case 'm': shift = 20; break;
      case 'k': shift = 10; break;
      case 'b': shift = 0; break;
      default: usage_error(fmt::format("{}: unknown size letter '{}' in '{}'", flag, *end, text));
    }
    if (end[1]) usage_error(fmt::format("{}: trailing characters after the size in '{}'", flag, text));
  }
  if (shift && v > (~0ull >> shift)) usage_error(fmt::format("{}: overflow scaling size '{}'", flag, text));
  return uint64_t(v) << shift;
}

namespace {

struct Selftest {
  const char* name;
  CLI::App* app = nullptr;
};
using Selftests = std::array<Selftest, 5>;
constexpr Selftests kTests = {{{"demand-paging"}, {"dirty-log-perf"}, {"private-mem-conversions"}, {"mmu-stress"},
                               {"pre-fault-memory"}}};
// Each command that takes the selftests (run, compare) has its own.
std::map<const CLI::App*, Selftests> g_tests_of;

CLI::App* add_test(CLI::App* run_cmd, Selftest& t, const std::string& what) {
  t.app = run_cmd->add_subcommand(t.name, what)->fallthrough();
  return t.app;
}

void add_size(CLI::App* app, const char* flag, uint64_t& out, const std::string& what) {
  app->add_option_function<std::string>(flag, [flag, &out](const std::string& v) { out = parse_size_arg(flag, v); },
                                        what)
      ->option_text("SIZE");
}

// mmu_stress_test's -m and -s are whole GiB; a size with a letter (64M) is
// ours, for runs smaller than a GiB.
void add_gib_size(CLI::App* app, const char* flag, uint64_t& out, const std::string& what) {
  app->add_option_function<std::string>(
         flag,
         [flag, &out](const std::string& v) {
           const bool bare = !v.empty() && v.find_first_not_of("0123456789") == std::string::npos;
           if (bare && (v.size() > 6 || std::stoull(v) == 0))
             usage_error(fmt::format("{}: {} GiB is out of range [1, 999999]", flag, v));
           out = bare ? std::stoull(v) << 30 : parse_size_arg(flag, v);
         },
         what)
      ->option_text("GIB");
}

void add_backing(CLI::App* app, std::string& out) {
  app->add_option("-s", out,
                  "backing source: anonymous (default), shmem (4K pages), anonymous_thp, anonymous_hugetlb, "
                  "anonymous_hugetlb_2mb, shared_hugetlb (2M pages)")
      ->check(CLI::IsMember({"anonymous", "shmem", "anonymous_thp", "anonymous_hugetlb", "anonymous_hugetlb_2mb",
                             "shared_hugetlb"}));
}

}  // namespace

void add_selftest_commands(CLI::App* run_cmd, WorkloadConfig& cfg) {
  SelftestParams& st = cfg.st;
  Selftests& g_tests = g_tests_of[run_cmd] = kTests;
  auto* dp = add_test(run_cmd, g_tests[0],
                      "demand_paging_test on a TD: each vCPU faults its part of the private test memory in, once");
  dp->add_option("-v", cfg.vcpus, "vCPUs (default 1)")->check(CLI::Range(1, 64));
  add_size(dp, "-b", st.bytes_per_vcpu, "bytes of memory each vCPU demand-pages (default 1G)");
  add_backing(dp, st.backing);
  dp->add_flag("-o", st.overlap, "every vCPU touches all the memory");

  auto* dl = add_test(run_cmd, g_tests[1],
                      "dirty_log_perf_test on a TD's shared memory: populate, log, dirty, collect and clear; each bitmap "
                      "is compared page by page with what the vCPUs wrote");
  dl->add_option("-i", st.iterations, "dirtying iterations (default 2, at least 2)")->check(CLI::Range(1, 100000));
  add_size(dl, "-b", st.bytes_per_vcpu, "bytes of memory per vCPU (default 1G)");
  dl->add_option("-v", cfg.vcpus, "vCPUs (default 1)")->check(CLI::Range(1, 64));
  add_backing(dl, st.backing);
  dl->add_option("-x", st.slots, "memslots the test memory is split into (default 1)")->check(CLI::Range(1, 512));
  dl->add_option("-w", st.write_percent, "percent of pages written in each pass (default 100)")
      ->check(CLI::Range(0, 100));
  dl->add_option_function<int>(
         "-f", [&st](int f) { st.write_percent = 100 / f; },
         "write 1/N of the pages (the older trees' write fraction; sets -w to 100/N)")
      ->check(CLI::Range(1, 100));
  dl->add_flag("-a", st.random_access, "access pages in a random order");
  dl->add_flag_callback("-g", [&st] { st.manual_protect = false; },
                        "no KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: KVM_GET_DIRTY_LOG write-protects, no clear step");
  dl->add_flag("-e", st.keep_running, "keep the vCPUs writing while dirty logging is disabled");

  auto* pmc = add_test(run_cmd, g_tests[2],
                       "private_mem_conversions_test on a TD: sub-ranges of each vCPU's 2M+4K area converted both ways");
  pmc->add_option("-n", cfg.vcpus, "vCPUs (default 1)")->check(CLI::Range(1, 64));
  pmc->add_option("-m", st.slots, "memslots the guest_memfd is split into (default 1)")->check(CLI::Range(1, 512));
  add_backing(pmc, st.backing);

  auto* ms = add_test(run_cmd, g_tests[3],
                      "mmu_stress_test on a TD's shared memory: memslots aliasing one memfd, written, reset, read, "
                      "made read-only and writable again under the vCPUs");
  ms->add_option("-c", cfg.vcpus, "vCPUs (default: 3/4 of the host's CPUs)")->check(CLI::Range(1, 64));
  add_gib_size(ms, "-m", st.max_mem, "guest memory in GiB (default 128; a size such as 64M also works)");
  add_gib_size(ms, "-s", st.slot_size, "memslot size in GiB (default 2; a size such as 16M also works)");
  ms->add_flag("-H", st.hugetlb, "the memfd is MFD_HUGETLB (2M pages)");

  auto* pf = add_test(run_cmd, g_tests[4],
                      "pre_fault_memory_test on a TD: KVM_PRE_FAULT_MEMORY over a 2M+4K slot, shared then private, "
                      "alone and against the slot's deletion");
  add_backing(pf, st.backing);
}

void apply_selftest_command(CLI::App* run_cmd, WorkloadConfig& cfg) {
  const Selftests& g_tests = g_tests_of.at(run_cmd);
  for (const Selftest& t : g_tests) {
    if (!t.app->parsed()) continue;
    if (auto* w = run_cmd->get_option_no_throw("--workload"); w && w->count() && cfg.name != t.name)
      usage_error(fmt::format("--workload {} and {} name two workloads", cfg.name, t.name));
    cfg.name = t.name;
  }
  const WorkloadInfo* w = find_workload(cfg.name);
  if (!w || !w->guest_gib) return;
  // The selftests' own defaults: one vCPU, sizes from their flags.
  const auto given = [&](const char* flag) {
    for (const Selftest& t : g_tests)
      if (auto* o = t.app->get_option_no_throw(flag); o && o->count()) return true;
    return false;
  };
  if (!given("-v") && !given("-n") && !given("-c") && run_cmd->get_option("--vcpus")->count() == 0)
    cfg.vcpus = cfg.name == "mmu-stress" ? std::clamp(int(std::thread::hardware_concurrency() * 3 / 4), 1, 64) : 1;
  if (run_cmd->get_option("--gib")->count())
    usage_error(fmt::format("--gib has no meaning for {}: its size comes from its own flags (-b, -v)", cfg.name));
  cfg.gib = w->guest_gib(cfg);
}

}  // namespace mirrormmu::cli
