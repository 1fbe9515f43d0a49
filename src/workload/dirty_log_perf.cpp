// SPDX-License-Identifier: MIT
// dirty_log_perf_test on a TD's shared memory (private memory cannot be
// dirty-logged): the vCPUs populate the test memory through the shared
// alias, dirty logging is enabled on every test slot, and each iteration
// the vCPUs make one pass (-w percent of the pages written, -a in random
// order) and the VMM collects the log (KVM_GET_DIRTY_LOG, and with manual
// protect KVM_CLEAR_DIRTY_LOG). The bitmap must name exactly the pages the
// vCPUs wrote since the last collection; each phase prints the selftest's
// figure. -i iterations, -b, -v, -s, -x slots, -w/-f, -g, -e.
#include <fmt/format.h>

#include <atomic>
#include <chrono>

#include "workload/memstress.h"

namespace mirrormmu {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// memstress's guest RNG (Park-Miller), seeded per vCPU.
struct GuestRandom {
  uint32_t seed;
  uint32_t next() {
    seed = static_cast<uint32_t>(uint64_t(seed) * 48271 % 0x7fffffff);
    return seed;
  }
};

VmConfig dirty_log_vm(const WorkloadConfig& c) {
  VmConfig v = memstress_vm_config(c, 0);
  // anonymous memory is MADV_NOHUGEPAGE in the selftests: 4K host pages.
  v.shared_backing = backing_page_size(c.st.backing).value_or(kPageSize) > kPageSize ? PgLevel::k2M : PgLevel::k4K;
  return v;
}

std::string dirty_log_refusal(const WorkloadConfig& c) {
  WorkloadConfig shared = c;
  shared.huge_pages = true;  // -s sizes the shared backing here, not private mappings
  if (std::string why = memstress_refusal(shared); !why.empty()) return why;
  if (c.st.iterations < 2) return fmt::format("-i {}: the test should have at least two iterations", c.st.iterations);
  const uint64_t pages = uint64_t(c.vcpus) * c.st.bytes_per_vcpu / kPageSize;
  const uint64_t page = backing_page_size(c.st.backing).value_or(kPageSize) / kPageSize;
  if (c.st.slots < 1 || pages % uint64_t(c.st.slots) || (pages / uint64_t(c.st.slots)) % page)
    return fmt::format("-x {}: guest memory cannot be evenly divided into {} slots of whole backing pages",
                       c.st.slots, c.st.slots);
  return "";
}

bool dirty_log_run(Driver& d, const WorkloadConfig& c, std::mt19937_64&) {
  Vm& vm = d.vm();
  const Memstress m = memstress_layout(c);
  const uint64_t shared = vm.shared_gpa_bit();
  const int nslots = c.st.slots;
  const uint64_t slot_bytes = m.size / uint64_t(nslots);
  const uint64_t pages = m.size / kPageSize;
  d.print(fmt::format("Test iterations: {}", c.st.iterations));
  print_memstress_header(d, m, c.ept_levels);
  d.op("create TD", [&] { return vm.create(); });
  d.op("add memslot 0: the guest image (guest_memfd)", [&] { return vm.add_memslot(0, 0, kImageSlotSize, kMemGuestMemfd); });
  for (int s = 0; s < nslots; s++)
    d.op(fmt::format("add memslot {}: {} MiB of shared test memory", s + 1, slot_bytes >> 20),
         [&] { return vm.add_memslot(s + 1, m.gpa + uint64_t(s) * slot_bytes, slot_bytes, 0); });
  d.op(fmt::format("KVM_TDX_INIT_MEM_REGION {} pages (TDH.MEM.PAGE.ADD)", kImagePages),
       [&] { return vm.init_mem_region(0, kImagePages); });
  d.op("KVM_TDX_FINALIZE_VM", [&] { return vm.finalize(); });
  if (d.failed()) return false;

  // What each vCPU wrote in the current pass, a bit per test page.
  std::vector<std::vector<uint64_t>> wrote(size_t(c.vcpus), std::vector<uint64_t>((pages + 63) / 64, 0));
  std::vector<GuestRandom> rnd;
  for (int v = 0; v < c.vcpus; v++) rnd.push_back({static_cast<uint32_t>(c.seed + uint64_t(v)) | 1});
  // One memstress pass of vCPU v: every page in order (or random pages,
  // as many), written with probability write_percent.
  auto pass = [&](int v, int write_percent, bool random_access) {
    const uint64_t first = (m.vcpu_gpa(v) - m.gpa) / kPageSize, n = m.vcpu_bytes() / kPageSize;
    for (uint64_t i = 0; i < n; i++) {
      const uint64_t p = first + (random_access ? rnd[size_t(v)].next() % n : i);
      const bool write = rnd[size_t(v)].next() % 100 < uint32_t(write_percent);
      if (write) wrote[size_t(v)][p / 64] |= 1ull << (p % 64);
      const ExitReason e = vm.vcpu_access(v, (m.gpa + p * kPageSize) | shared, write);
      if (e == ExitReason::VmDead) return -EIO;
      if (e != ExitReason::None) return -EFAULT;
    }
    return 0;
  };

  auto t0 = Clock::now();
  d.parallel("vCPUs populate the test memory", c.vcpus, [&](int v) { return pass(v, 100, false); });
  d.print(fmt::format("Populate memory time: {}", selftest_time(since(t0))));
  t0 = Clock::now();
  for (int s = 0; s < nslots; s++)
    d.op(fmt::format("enable dirty logging on memslot {}", s + 1), [&] { return vm.set_dirty_logging(s + 1, true); });
  d.print(fmt::format("Enabling dirty logging time: {}", selftest_time(since(t0))));
  d.print("");

  double get_total = 0, clear_total = 0;
  const uint64_t slot_words = slot_bytes / kPageSize / 64, slot_pages = slot_bytes / kPageSize;
  for (int it = 1; it <= c.st.iterations && !d.failed(); it++) {
    for (auto& w : wrote) std::fill(w.begin(), w.end(), 0);
    t0 = Clock::now();
    d.parallel(fmt::format("vCPUs dirty memory (iteration {})", it), c.vcpus,
               [&](int v) { return pass(v, c.st.write_percent, c.st.random_access); });
    const double dirty_s = since(t0);
    d.print(fmt::format("Iteration {} dirty memory time: {}", it, selftest_time(dirty_s)));
    Chart& chart = d.chart("dirty-log-perf", "dirty_log_perf_test: each iteration", "iteration", "seconds");
    chart.add("dirty memory", it, dirty_s);
    std::vector<std::vector<uint64_t>> logs(static_cast<size_t>(nslots));
    t0 = Clock::now();
    for (int s = 0; s < nslots; s++)
      d.op(fmt::format("KVM_GET_DIRTY_LOG memslot {} (iteration {})", s + 1, it), [&] {
        auto got = c.st.manual_protect ? vm.get_dirty_log_manual(s + 1) : vm.get_dirty_log(s + 1);
        if (!got) return -EINVAL;
        logs[size_t(s)] = std::move(*got);
        return 0;
      });
    const double get_s = since(t0);
    get_total += get_s;
    d.print(fmt::format("Iteration {} get dirty log time: {}", it, selftest_time(get_s)));
    chart.add("get dirty log", it, get_s);
    // Exactly the pages written since the last collection: one missing is
    // a lost dirty bit (the guest's write would never be migrated).
    if (!d.failed()) {
      uint64_t missing = 0, extra = 0, first_missing = ~0ull;
      for (uint64_t p = 0; p < pages; p++) {
        bool w = false;
        for (const auto& v : wrote) w |= (v[p / 64] >> (p % 64)) & 1;
        const uint64_t s = p / slot_pages, q = p % slot_pages;
        const bool got = q / 64 < logs[s].size() && ((logs[s][q / 64] >> (q % 64)) & 1);
        if (w && !got && missing++ == 0) first_missing = p;
        extra += got && !w;
      }
      if (missing || extra)
        d.report("dirty_log", fmt::format("iteration {}: {} written pages not reported (the first gpa {:#x}), "
                                                     "{} reported but not written",
                                                     it, missing, first_missing == ~0ull ? 0 : m.gpa + first_missing * kPageSize,
                                                     extra));
    }
    if (c.st.manual_protect) {
      t0 = Clock::now();
      for (int s = 0; s < nslots; s++)
        d.op(fmt::format("KVM_CLEAR_DIRTY_LOG memslot {} (iteration {})", s + 1, it),
             [&] { return vm.clear_dirty_log(s + 1, std::vector<uint64_t>(slot_words, ~0ull)); });
      const double clear_s = since(t0);
      clear_total += clear_s;
      d.print(fmt::format("Iteration {} clear dirty log time: {}", it, selftest_time(clear_s)));
      chart.add("clear dirty log", it, clear_s);
    }
  }
  if (d.failed()) return false;

  t0 = Clock::now();
  if (c.st.keep_running) {
    // -e: the vCPUs keep writing while the VMM turns logging off under them.
    std::atomic<bool> off{false};
    d.parallel(
        "vCPUs keep writing while dirty logging is disabled", c.vcpus,
        [&](int v) {
          for (int k = 0; k < 1 || (d.threads() && !d.explored() && !off.load()); k++)
            if (int r = pass(v, c.st.write_percent, c.st.random_access)) return r;
          return 0;
        },
        [&] {
          for (int s = 0; s < nslots; s++)
            if (int r = vm.set_dirty_logging(s + 1, false)) return r;
          off.store(true);
          return 0;
        });
  } else {
    for (int s = 0; s < nslots; s++)
      d.op(fmt::format("disable dirty logging on memslot {}", s + 1), [&] { return vm.set_dirty_logging(s + 1, false); });
  }
  d.print(fmt::format("Disabling dirty logging time: {}", selftest_time(since(t0))));
  const int n = c.st.iterations;
  d.print(fmt::format("Get dirty log over {} iterations took {}. (Avg {}/iteration)", n, selftest_time(get_total),
                      selftest_time(get_total / n)));
  if (c.st.manual_protect)
    d.print(fmt::format("Clear dirty log over {} iterations took {}. (Avg {}/iteration)", n,
                        selftest_time(clear_total), selftest_time(clear_total / n)));
  return !d.failed();
}

}  // namespace

const WorkloadInfo& dirty_log_perf_workload() {
  static const WorkloadInfo w{"dirty-log-perf",
                              "dirty_log_perf_test on a TD's shared memory: populate, enable logging, per iteration "
                              "a dirtying pass and KVM_GET/CLEAR_DIRTY_LOG checked page by page; -i -b -v -s -x -w/-f "
                              "-a -g -e",
                              &dirty_log_vm, &dirty_log_run, &dirty_log_refusal, &memstress_gib};
  return w;
}

}  // namespace mirrormmu
