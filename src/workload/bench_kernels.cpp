// SPDX-License-Identifier: MIT
#include "workload/bench_kernels.h"

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

double populate(bool td, uint64_t pages, int threads) {
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
  std::vector<std::thread> ts;
  std::atomic<uint64_t> failed{0};
  const auto origin = Clock::now();
  const auto now_ns = [&] { return static_cast<int64_t>(ns_since(origin)); };
  auto body = [&](int v) {
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
    for (int64_t e = end_ns.load(); e < done && !end_ns.compare_exchange_weak(e, done);) {
    }
  };
  if (threads == 1) {
    body(0);
  } else {
    for (int v = 0; v < threads; v++) ts.emplace_back(body, v);
    for (auto& t : ts) t.join();
  }
  const double ns = double(end_ns.load() - t0_ns.load()) / double(per * threads);
  vm->set_vcpus_threaded(false);
  // A fault that did not map its page makes the figure a lie: it is a bug
  // in the model, found here.
  std::string why = failed ? fmt::format("{} of {} faults did not map their page", failed.load(), per * threads) : "";
  if (vm->bugs().bugged()) why += fmt::format("{}VM bugged by {}", why.empty() ? "" : "; ", site_info(vm->bugs().first_bug()).id);
  const bool broken = failed || vm->bugs().bugged();
  vm->destroy();
  if (broken) throw std::runtime_error(fmt::format("populate {} with {} thread(s): {}", td ? "mirror" : "direct", threads, why));
  return ns;
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

double populate_direct_ns(uint64_t pages, int threads) { return populate(false, pages, threads); }
double populate_mirror_ns(uint64_t pages, int threads) { return populate(true, pages, threads); }
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
