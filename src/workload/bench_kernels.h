// SPDX-License-Identifier: MIT
// What the benchmarks time: each kernel sets up outside the timed region and
// returns nanoseconds per unit (per SPTE, per page, per execution).
// bench/ wraps them for Google Benchmark; `mirrormmu bench` prints a table
// with every figure also as a ratio to the floor.
#pragma once

#include <cstdint>
#include <vector>

namespace mirrormmu::bench {

// The floor: one 8-byte cmpxchg per SPTE into preallocated page tables.
double floor_cmpxchg_ns(uint64_t sptes);
// Faulting in `pages` 4K pages (direct root of a normal VM, or private
// memory of a TD through PAGE.AUG), on `threads` vCPU threads with disjoint
// ranges. ns per page (wall time / pages); std::runtime_error if a fault
// did not map its page or a site fired (the figure would be a lie).
// Thread k is pinned to the k-th CPU this process may use (round robin).
double populate_direct_ns(uint64_t pages, int threads);
double populate_mirror_ns(uint64_t pages, int threads);

// The CPUs `threads` benchmark threads are pinned to: the k-th allowed CPU
// for thread k, round robin.
std::vector<int> bench_cpus(int threads);

// One populate run, thread k pinned to cpus[k] faulting its own share of
// `pages`: the wall time per page, and each thread's own time per fault
// (from the common start to its last fault).
struct PopulateRun {
  double ns_per_page = 0;
  std::vector<double> thread_ns_per_fault;
};
PopulateRun populate_run(bool td, uint64_t pages, const std::vector<int>& cpus);

// How populate scales with threads. On a machine whose CPUs are not alike
// (a VM's vCPUs on a busy host: here one ran the fault path 1.8x slower
// than the other, for a while, while the cmpxchg floor differed by 10%),
// wall time against one thread measures the slowest CPU as much as the
// code. The weighted speedup compares each thread with itself: its time
// per fault alone on its CPU over its time with the others running, summed
// over threads; n when nothing the threads share slows them, 1 when they
// are serialised. Taken per round (alone and together measured one after
// the other) and then the median of `rounds` rounds.
struct Scaling {
  struct Round {
    std::vector<double> alone;     // ns per fault, one thread alone on cpus[k]
    std::vector<double> together;  // ns per fault of thread k with all running
  };
  std::vector<int> cpus;
  std::vector<Round> rounds;
  double one = 0;   // the best one-thread time of any CPU and round
  double many = 0;  // the best wall ns per page with all threads running
  double wall_speedup() const { return many > 0 ? one / many : 0; }
  double weighted_speedup() const;
  // Per CPU, the median over rounds of alone or together.
  std::vector<double> median_of(std::vector<double> Round::*which) const;
};
Scaling populate_scaling(bool td, uint64_t pages, int threads, int rounds);
// Private memory of a TD mapped with 2M pages (one fault and one 2M AUG per
// 512 pages, design centralized), ns per 4K page of guest memory; and
// demoting every one of those 2M mappings (BLOCK, TRACK, DEMOTE under the
// exclusive lock), ns per 2M mapping.
double populate_mirror_2m_ns(uint64_t pages);
double demote_2m_ns(uint64_t pages);
// Zapping `pages` mapped 4K pages (memslot deletion), ns per page.
double zap_direct_ns(uint64_t pages);
double zap_mirror_ns(uint64_t pages);
// Explorer executions of the two-vCPU fault race (fault-fault-2m, DFS).
double explorer_exec_ns(uint64_t executions);
// One scheduling point with no engine installed (the fast-path cost of the
// deterministic engine being possible), and how many a 4K direct fault hits.
double sched_point_off_ns(uint64_t calls);
double sched_points_per_direct_fault();
// How much faster `threads` threads run independent arithmetic, split
// between them, than one thread runs all of it (best of `repeat`): the most
// any scaling figure can show on this machine. Ideally `threads`.
double parallel_ceiling(int threads, int repeat);

}  // namespace mirrormmu::bench
