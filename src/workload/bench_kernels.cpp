// SPDX-License-Identifier: MIT
#include "workload/bench_kernels.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "explore/explorer.h"
#include "spte/spte.h"
#include "sync/rcu.h"
#include "sync/spte_atomic.h"
#include "vm/vm.h"

namespace mirrormmu::bench {

namespace {

using Clock = std::chrono::steady_clock;
double ns_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
}

constexpr uint64_t kRam = 1ull << 32;

std::unique_ptr<Vm> make_vm(bool td, uint64_t pages, int vcpus, bool huge = false) {
  VmConfig c;
  c.type = td ? VmType::Td : VmType::Normal;
  if (huge) {
    c.design = "centralized-rfc-fixed";
    c.huge_pages = true;
  }
  c.nr_vcpus = vcpus;
  c.shared_backing = PgLevel::k4K;  // 4K mappings: one fault per page
  c.pool_pages = pages * 2 + (16u << 10);
  auto vm = std::make_unique<Vm>(c);
  vm->create();
  vm->add_memslot(0, kRam, pages << kPageShift, td ? kMemGuestMemfd : 0);
  if (td) {
    vm->finalize();
    vm->set_memory_attributes(kRam, pages << kPageShift, true);
  }
  return vm;
}

// Pins the calling thread to one CPU, as the selftests' -c does, and puts
// its old mask back when done. On this project's VMs the vCPUs are not
// alike: one run of the same binary, unpinned, measured 79 ns a fault and
// the next 135, as the scheduler left the thread on one CPU or the other.
class PinnedTo {
 public:
  explicit PinnedTo(int cpu) {
    pinned_ = pthread_getaffinity_np(pthread_self(), sizeof old_, &old_) == 0;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    pinned_ = pinned_ && CPU_ISSET(cpu, &old_) && pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0;
  }
  ~PinnedTo() {
    if (pinned_) pthread_setaffinity_np(pthread_self(), sizeof old_, &old_);
  }
  PinnedTo(const PinnedTo&) = delete;
  PinnedTo& operator=(const PinnedTo&) = delete;

 private:
  cpu_set_t old_;
  bool pinned_ = false;
};

PopulateRun populate(bool td, uint64_t pages, const std::vector<int>& cpus) {
  const int threads = static_cast<int>(cpus.size());
  sync::RcuThread rcu;
  auto vm = make_vm(td, pages, threads);
  // Host memory is populated beforehand, as the selftests prefault it: the
  // figure is the fault path (and the TDX module), not the page allocator.
  for (const auto& slot : vm->memslots())
    for (uint64_t i = 0; i < slot->npages; i++) (td ? slot->gmem.get() : slot->shared.get())->get_pfn(i);
  vm->set_vcpus_threaded(threads > 1);
  const uint64_t per = pages / threads;
  // The clock runs from the moment every thread is ready to fault until the
  // last one is done: starting a thread and registering it with RCU cost
  // as much as a few thousand faults, and at the default size they made two
  // threads look barely faster than one.
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<int64_t> t0_ns{0}, end_ns{0};
  std::vector<int64_t> thread_ns(threads);
  std::vector<std::thread> ts;
  std::atomic<uint64_t> failed{0};
  const auto origin = Clock::now();
  const auto now_ns = [&] { return static_cast<int64_t>(ns_since(origin)); };
  auto body = [&](int v) {
    PinnedTo pin(cpus[v]);
    sync::RcuThread r;
    if (ready.fetch_add(1) + 1 == threads) {
      t0_ns.store(now_ns());
      go.store(true);
    }
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
    for (uint64_t i = v * per; i < (v + 1) * per; i++)
      if (vm->vcpu_fault(v, kRam + (i << kPageShift), true) != ExitReason::None) [[unlikely]]
        failed.fetch_add(1, std::memory_order_relaxed);
    const int64_t done = now_ns();
    thread_ns[v] = done - t0_ns.load();
    for (int64_t e = end_ns.load(); e < done && !end_ns.compare_exchange_weak(e, done);) {
    }
  };
  // One thread is a thread of its own too, as in the runs it is compared
  // with: faulting on the caller's thread measured 113-133 ns a fault on
  // one CPU while a new thread there measured 70, in the same rounds.
  for (int v = 0; v < threads; v++) ts.emplace_back(body, v);
  for (auto& t : ts) t.join();
  PopulateRun run;
  run.ns_per_page = double(end_ns.load() - t0_ns.load()) / double(per * threads);
  for (const int64_t ns : thread_ns) run.thread_ns_per_fault.push_back(double(ns) / double(per));
  vm->set_vcpus_threaded(false);
  // A fault that did not map its page makes the figure a lie: it is a bug
  // in the model, found here.
  std::string why = failed ? fmt::format("{} of {} faults did not map their page", failed.load(), per * threads) : "";
  if (vm->bugs().bugged()) why += fmt::format("{}VM bugged by {}", why.empty() ? "" : "; ", site_info(vm->bugs().first_bug()).id);
  const bool broken = failed || vm->bugs().bugged();
  vm->destroy();
  if (broken) throw std::runtime_error(fmt::format("populate {} with {} thread(s): {}", td ? "mirror" : "direct", threads, why));
  return run;
}

// Maps the TD's private memory with one fault per 2M block; returns the ns
// it took, the VM left mapped for the caller.
double populate_2m(Vm& vm, uint64_t pages) {
  constexpr uint64_t k2MPages = pages_per_hpage(PgLevel::k2M);
  for (const auto& slot : vm.memslots())
    for (uint64_t i = 0; i < slot->npages; i++) slot->gmem->get_pfn(i);
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < pages; i += k2MPages) vm.vcpu_fault(0, kRam + (i << kPageShift), true);
  return ns_since(t0);
}

double zap(bool td, uint64_t pages) {
  sync::RcuThread rcu;
  auto vm = make_vm(td, pages, 1);
  for (uint64_t i = 0; i < pages; i++) vm->vcpu_fault(0, kRam + (i << kPageShift), true);
  const auto t0 = Clock::now();
  vm->delete_memslot(0);
  const double ns = ns_since(t0) / double(pages);
  vm->destroy();
  return ns;
}

std::atomic<uint64_t> g_points{0};
void count_point(sync::PointKind, const void*) { g_points.fetch_add(1, std::memory_order_relaxed); }

}  // namespace

double floor_cmpxchg_ns(uint64_t sptes) {
  const uint64_t tables = (sptes + kSptePerPage - 1) / kSptePerPage;
  std::vector<uint64_t> mem(tables * kSptePerPage, spte::kNonPresent);
  const uint64_t leaf = spte::make_leaf(Pfn{1}, PgLevel::k4K);
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < sptes; i++) {
    uint64_t old = spte::kNonPresent;
    std::atomic_ref<uint64_t>(mem[i]).compare_exchange_strong(old, leaf + (i << kPageShift));
  }
  const double ns = ns_since(t0) / double(sptes);
  // Keep the stores observable.
  volatile uint64_t sink = mem[sptes / 2];
  (void)sink;
  return ns;
}

std::vector<int> bench_cpus(int threads) {
  cpu_set_t set;
  std::vector<int> allowed;
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; c++)
      if (CPU_ISSET(c, &set)) allowed.push_back(c);
  if (allowed.empty()) allowed.push_back(0);
  std::vector<int> cpus;
  for (int k = 0; k < threads; k++) cpus.push_back(allowed[size_t(k) % allowed.size()]);
  return cpus;
}

PopulateRun populate_run(bool td, uint64_t pages, const std::vector<int>& cpus) {
  if (cpus.empty()) throw std::invalid_argument("populate_run: no CPU to run on");
  return populate(td, pages, cpus);
}

namespace {
double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}
}  // namespace

double Scaling::weighted_speedup() const {
  std::vector<double> w;
  for (const Round& r : rounds) {
    double sum = 0;
    for (size_t k = 0; k < r.alone.size() && k < r.together.size(); k++)
      if (r.together[k] > 0) sum += r.alone[k] / r.together[k];
    w.push_back(sum);
  }
  return median(std::move(w));
}

Scaling populate_scaling(bool td, uint64_t pages, int threads, int rounds) {
  Scaling s;
  s.cpus = bench_cpus(threads);
  const size_t n = s.cpus.size();
  s.many = 1e300;
  // Alone and together alternate within each round, and the weighted
  // speedup is taken per round and then the median of the rounds: on this
  // project's VMs a CPU's speed changed within seconds, and bests of alone
  // and of together picked from different rounds once summed to 2.8 for
  // two threads. The one-thread run for thread k faults as many pages as
  // thread k does among the others, on a thread of its own pinned to the
  // same CPU.
  for (int r = 0; r < rounds; r++) {
    Scaling::Round round;
    for (size_t k = 0; k < n; k++) round.alone.push_back(populate(td, pages / n, {s.cpus[k]}).ns_per_page);
    const PopulateRun all = populate(td, pages, s.cpus);
    s.many = std::min(s.many, all.ns_per_page);
    round.together = all.thread_ns_per_fault;
    s.rounds.push_back(std::move(round));
  }
  s.one = 1e300;
  for (const Scaling::Round& r : s.rounds)
    for (const double a : r.alone) s.one = std::min(s.one, a);
  return s;
}

std::vector<double> Scaling::median_of(std::vector<double> Round::*which) const {
  std::vector<double> out;
  for (size_t k = 0; k < cpus.size(); k++) {
    std::vector<double> v;
    for (const Round& r : rounds)
      if (k < (r.*which).size()) v.push_back((r.*which)[k]);
    out.push_back(median(std::move(v)));
  }
  return out;
}

double populate_direct_ns(uint64_t pages, int threads) { return populate(false, pages, bench_cpus(threads)).ns_per_page; }
double populate_mirror_ns(uint64_t pages, int threads) { return populate(true, pages, bench_cpus(threads)).ns_per_page; }
double populate_mirror_2m_ns(uint64_t pages) {
  sync::RcuThread rcu;
  pages &= ~(pages_per_hpage(PgLevel::k2M) - 1);
  auto vm = make_vm(true, pages, 1, true);
  const double ns = populate_2m(*vm, pages) / double(pages);
  vm->destroy();
  return ns;
}

double demote_2m_ns(uint64_t pages) {
  sync::RcuThread rcu;
  pages &= ~(pages_per_hpage(PgLevel::k2M) - 1);
  auto vm = make_vm(true, pages, 1, true);
  populate_2m(*vm, pages);
  const Gfn start = Gfn::from_gpa(kRam);
  const auto t0 = Clock::now();
  {
    sync::WriteGuard lock(vm->mmu().mmu_lock());
    vm->mmu().kvm_tdp_mmu_mirrors_split_huge_pages(start, start + pages, PgLevel::k4K);
  }
  const double ns = ns_since(t0) / double(pages / pages_per_hpage(PgLevel::k2M));
  vm->destroy();
  return ns;
}

double zap_direct_ns(uint64_t pages) { return zap(false, pages); }
double zap_mirror_ns(uint64_t pages) { return zap(true, pages); }

double explorer_exec_ns(uint64_t executions) {
  explore::ExploreConfig cfg;
  cfg.scenario = "fault-fault-2m";
  cfg.scale = 1;
  cfg.budget = executions;
  cfg.shrink = false;
  std::string err;
  const auto t0 = Clock::now();
  auto rep = explore::explore(cfg, nullptr, &err);
  const double ns = ns_since(t0);
  return rep && rep->executions ? ns / double(rep->executions) : 0;
}

double sched_point_off_ns(uint64_t calls) {
  // The same loop with and without the scheduling point; the difference is
  // what the point costs when no engine is installed.
  // The object is a fixed address, as an SPTE pointer is: passing &i would
  // make the loop counter live in memory and time a store-to-load forward
  // per iteration instead of the point.
  static uint64_t object;
  auto loop = [&](bool with_point) {
    const auto t0 = Clock::now();
    for (uint64_t i = 0; i < calls; i++) {
      if (with_point) sync::sched_point(sync::PointKind::SpteRead, &object);
      asm volatile("" : : "r"(i) : "memory");  // keep the loop, and reload the flag
    }
    return ns_since(t0) / double(calls);
  };
  const double empty = loop(false), with = loop(true);
  return std::max(0.0, with - empty);
}

double sched_points_per_direct_fault() {
  sync::RcuThread rcu;
  constexpr uint64_t kPages = 4096;
  auto vm = make_vm(false, kPages, 1);
  vm->vcpu_fault(0, kRam, true);  // roots and caches exist before counting
  g_points = 0;
  sync::set_sched_handler(&count_point);
  for (uint64_t i = 1; i < kPages; i++) vm->vcpu_fault(0, kRam + (i << kPageShift), true);
  sync::set_sched_handler(nullptr);
  const double per = double(g_points.load()) / double(kPages - 1);
  vm->destroy();
  return per;
}

namespace {
// A chain of multiplies no compiler can shorten: about a nanosecond a step,
// no memory touched, so threads share nothing but the CPUs.
uint64_t lcg_steps(uint64_t x, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    asm volatile("" : "+r"(x));
  }
  return x;
}
}  // namespace

double parallel_ceiling(int threads, int repeat) {
  constexpr uint64_t kSteps = 200'000'000;
  std::atomic<uint64_t> sink{0};
  double one = 1e300, many = 1e300;
  for (int r = 0; r < repeat; r++) {
    auto t0 = Clock::now();
    sink += lcg_steps(r, kSteps);
    one = std::min(one, ns_since(t0));
    t0 = Clock::now();
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; t++) ts.emplace_back([&, t] { sink += lcg_steps(t + r, kSteps / threads); });
    for (auto& t : ts) t.join();
    many = std::min(many, ns_since(t0));
  }
  return one / many;
}

}  // namespace mirrormmu::bench
