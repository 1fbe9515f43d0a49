// SPDX-License-Identifier: MIT
// The bench's scaling figures: the weighted speedup is each thread against
// itself alone on its CPU, so a slow CPU does not pass for a serialised
// fault path, and a serialised one is not hidden by a fast CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <stdexcept>

#include "workload/bench_kernels.h"

namespace mirrormmu::test {
namespace {

using bench::Scaling;

TEST(BenchScaling, AThreadOnASlowCpuCountsAsFullyScaled) {
  // cpu1 runs everything 1.8x slower, with or without company: by the wall
  // clock two threads look barely faster than one on cpu0, yet nothing
  // they share slowed either of them.
  Scaling s;
  s.cpus = {0, 1};
  s.alone = {70, 126};
  s.together = {70, 126};
  s.one = 70;
  s.many = 126.0 / 2;
  EXPECT_NEAR(s.weighted_speedup(), 2.0, 1e-9);
  EXPECT_LT(s.wall_speedup(), 1.2);
}

TEST(BenchScaling, SerialisedThreadsScoreOne) {
  // Each thread takes twice as long per fault with the other running: what
  // a lock held across the whole fault does.
  Scaling s;
  s.cpus = {0, 1};
  s.alone = {70, 70};
  s.together = {140, 140};
  EXPECT_NEAR(s.weighted_speedup(), 1.0, 1e-9);
}

TEST(BenchScaling, ARealRunPinsEachThreadAndTimesEveryOne) {
  const Scaling s = bench::populate_scaling(false, 2048, 2, 1);
  ASSERT_EQ(s.cpus.size(), 2u);
  ASSERT_EQ(s.alone.size(), 2u);
  ASSERT_EQ(s.together.size(), 2u);
  for (size_t k = 0; k < 2; k++) {
    EXPECT_TRUE(std::isfinite(s.alone[k]) && s.alone[k] > 0) << k;
    EXPECT_TRUE(std::isfinite(s.together[k]) && s.together[k] > 0) << k;
  }
  EXPECT_EQ(s.one, std::min(s.alone[0], s.alone[1]));
  EXPECT_GT(s.many, 0);
  // Thread k on the k-th allowed CPU, round robin.
  EXPECT_EQ(s.cpus, bench::bench_cpus(2));
}

TEST(BenchScaling, PopulateRunReportsEveryThread) {
  const auto run = bench::populate_run(true, 1024, bench::bench_cpus(2));
  ASSERT_EQ(run.thread_ns_per_fault.size(), 2u);
  EXPECT_GT(run.ns_per_page, 0);
  EXPECT_THROW(bench::populate_run(false, 1024, {}), std::invalid_argument);
}

}  // namespace
}  // namespace mirrormmu::test
