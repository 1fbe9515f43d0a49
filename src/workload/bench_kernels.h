// SPDX-License-Identifier: MIT
// What the benchmarks time: each kernel sets up outside the timed region and
// returns nanoseconds per unit (per SPTE, per page, per execution).
// bench/ wraps them for Google Benchmark; `mirrormmu bench` prints a table
// with every figure also as a ratio to the floor.
#pragma once

#include <cstdint>

namespace mirrormmu::bench {

// The floor: one 8-byte cmpxchg per SPTE into preallocated page tables.
double floor_cmpxchg_ns(uint64_t sptes);
// Faulting in `pages` 4K pages (direct root of a normal VM, or private
// memory of a TD through PAGE.AUG), on `threads` vCPU threads with disjoint
// ranges. ns per page (wall time / pages); std::runtime_error if a fault
// did not map its page or a site fired (the figure would be a lie).
double populate_direct_ns(uint64_t pages, int threads);
double populate_mirror_ns(uint64_t pages, int threads);
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
