// SPDX-License-Identifier: MIT
// The bench's scaling figures: the weighted speedup is each thread against
// itself alone on its CPU, so a slow CPU does not pass for a serialised
// fault path, and a serialised one is not hidden by a fast CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <vector>
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
  s.rounds = {{{70, 126}, {70, 126}}};
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
  s.rounds = {{{70, 70}, {140, 140}}};
  EXPECT_NEAR(s.weighted_speedup(), 1.0, 1e-9);
}

TEST(BenchScaling, EachRoundIsItsOwnRatioAndTheMedianIsTheFigure) {
  // The CPUs changed speed between rounds. Mixing the best alone of one
  // round with the best together of another would make 1.8 + 1.0; per
  // round, both rounds say 2 (serialised: 1), and one round disturbed
  // throughout is outvoted.
  Scaling s;
  s.cpus = {0, 1};
  s.rounds = {{{126, 70}, {126, 70}}, {{70, 126}, {70, 126}}, {{70, 70}, {140, 140}}};
  EXPECT_NEAR(s.weighted_speedup(), 2.0, 1e-9);
  EXPECT_EQ(s.median_of(&Scaling::Round::alone), (std::vector<double>{70, 70}));
  EXPECT_EQ(s.median_of(&Scaling::Round::together), (std::vector<double>{126, 126}));
  s.rounds.push_back({{70, 70}, {140, 140}});
  EXPECT_NEAR(s.weighted_speedup(), 1.5, 1e-9) << "an even count takes the mean of the middle two";
}

TEST(BenchScaling, ARealRunPinsEachThreadAndTimesEveryOne) {
  const Scaling s = bench::populate_scaling(false, 2048, 2, 3);
  ASSERT_EQ(s.cpus.size(), 2u);
  ASSERT_EQ(s.rounds.size(), 3u);
  double best = 1e300;
  for (const Scaling::Round& r : s.rounds) {
    ASSERT_EQ(r.alone.size(), 2u);
    ASSERT_EQ(r.together.size(), 2u);
    for (size_t k = 0; k < 2; k++) {
      EXPECT_TRUE(std::isfinite(r.alone[k]) && r.alone[k] > 0) << k;
      EXPECT_TRUE(std::isfinite(r.together[k]) && r.together[k] > 0) << k;
      best = std::min(best, r.alone[k]);
    }
  }
  EXPECT_EQ(s.one, best);
  EXPECT_GT(s.many, 0);
  EXPECT_GT(s.weighted_speedup(), 0);
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
