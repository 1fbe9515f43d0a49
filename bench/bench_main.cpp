// SPDX-License-Identifier: MIT
// Google Benchmark wrappers of the kernels in workload/bench_kernels.h.
// Each reports ns per unit as a counter; the floor is measured alongside so
// ratios can be read off one run (`mirrormmu bench` prints them directly).
#include <benchmark/benchmark.h>

#include "explore/explorer.h"
#include "workload/bench_kernels.h"

namespace {

using namespace mirrormmu::bench;

template <class F>
void run(benchmark::State& state, const char* unit, F&& f) {
  double ns = 0;
  for (auto _ : state) {
    ns = f();
    state.SetIterationTime(ns * 1e-9);
  }
  state.counters[std::string("ns/") + unit] = ns;
}

void BM_FloorCmpxchg(benchmark::State& s) { run(s, "spte", [&] { return floor_cmpxchg_ns(s.range(0)); }); }
void BM_PopulateDirect(benchmark::State& s) {
  run(s, "page", [&] { return populate_direct_ns(s.range(0), static_cast<int>(s.range(1))); });
}
void BM_PopulateMirror(benchmark::State& s) {
  run(s, "page", [&] { return populate_mirror_ns(s.range(0), static_cast<int>(s.range(1))); });
}
void BM_PopulateMirror2M(benchmark::State& s) { run(s, "page", [&] { return populate_mirror_2m_ns(s.range(0)); }); }
void BM_Demote2M(benchmark::State& s) { run(s, "2m", [&] { return demote_2m_ns(s.range(0)); }); }
void BM_ZapDirect(benchmark::State& s) { run(s, "page", [&] { return zap_direct_ns(s.range(0)); }); }
void BM_ZapMirror(benchmark::State& s) { run(s, "page", [&] { return zap_mirror_ns(s.range(0)); }); }
void BM_ExplorerFaultRace(benchmark::State& s) { run(s, "execution", [&] { return explorer_exec_ns(s.range(0)); }); }
void BM_SchedPointOff(benchmark::State& s) { run(s, "call", [&] { return sched_point_off_ns(s.range(0)); }); }

// The exhaustive DFS of fault-fault-2m --scale 1 at two preemptions, with
// (arg 1) and without (arg 0) sleep sets: seconds, executions, pruned.
void BM_DfsFaultFault2m(benchmark::State& s) {
  mirrormmu::explore::ExploreConfig c;
  c.scenario = "fault-fault-2m";
  c.scale = 1;
  c.preemptions = 2;
  c.reduction = s.range(0) != 0;
  c.budget = uint64_t(1) << 40;
  c.shrink = false;
  mirrormmu::explore::ExploreReport r;
  for (auto _ : s) {
    std::string error;
    auto rep = mirrormmu::explore::explore(c, nullptr, &error);
    if (!rep) {
      s.SkipWithError(error.c_str());
      return;
    }
    r = *rep;
    s.SetIterationTime(r.seconds);
  }
  s.counters["executions"] = double(r.executions);
  s.counters["pruned"] = double(r.pruned);
  s.counters["exhaustive"] = r.exhausted;
}

constexpr int64_t kPages = 1 << 16;
BENCHMARK(BM_FloorCmpxchg)->Arg(kPages)->UseManualTime()->Iterations(5);
BENCHMARK(BM_PopulateDirect)->Args({kPages, 1})->Args({kPages, 2})->UseManualTime()->Iterations(3);
BENCHMARK(BM_PopulateMirror)->Args({kPages, 1})->Args({kPages, 2})->UseManualTime()->Iterations(3);
BENCHMARK(BM_PopulateMirror2M)->Arg(kPages)->UseManualTime()->Iterations(3);
BENCHMARK(BM_Demote2M)->Arg(kPages)->UseManualTime()->Iterations(3);
BENCHMARK(BM_ZapDirect)->Arg(kPages)->UseManualTime()->Iterations(3);
BENCHMARK(BM_ZapMirror)->Arg(kPages)->UseManualTime()->Iterations(3);
BENCHMARK(BM_ExplorerFaultRace)->Arg(200)->UseManualTime()->Iterations(3);
BENCHMARK(BM_DfsFaultFault2m)->Arg(1)->Arg(0)->UseManualTime()->Iterations(1)->Unit(benchmark::kSecond);
BENCHMARK(BM_SchedPointOff)->Arg(10'000'000)->UseManualTime()->Iterations(5);

}  // namespace
