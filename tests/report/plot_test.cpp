// SPDX-License-Identifier: MIT
// --plot: a workload's charts come out of gnuplot as real PNG and SVG files
// that show what was measured.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "report/plot.h"
#include "workload/runner.h"

namespace mirrormmu::test {
namespace {

std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

TEST(Plot, DirtyLogPerfIterationsBecomeAPngAndAnSvg) {
  WorkloadConfig wc;
  wc.name = "dirty-log-perf";
  wc.vcpus = 1;
  wc.st.bytes_per_vcpu = 4ull << 20;
  wc.st.iterations = 3;
  wc.threads = false;
  RunOutcome out = run_workload(wc);
  ASSERT_EQ(out.result.exit_code, 0) << out.result.error;
  const Chart* chart = nullptr;
  for (const Chart& c : out.result.charts)
    if (c.name == "dirty-log-perf") chart = &c;
  ASSERT_NE(chart, nullptr);
  ASSERT_EQ(chart->series.size(), 3u);  // dirty, get, clear
  for (const auto& s : chart->series) EXPECT_EQ(s.points.size(), 3u) << s.label;

  const auto dir = std::filesystem::temp_directory_path() / ("mirrormmu-plot-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string error;
  const auto files = draw_charts(dir.string(), out.result.charts, &error);
  ASSERT_EQ(error, "");
  ASSERT_EQ(files.size(), 2 * out.result.charts.size());
  const std::string png = slurp(dir / "dirty-log-perf.png");
  ASSERT_GT(png.size(), 1000u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  const std::string svg = slurp(dir / "dirty-log-perf.svg");
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("get dirty log"), std::string::npos);
  EXPECT_NE(svg.find("dirty_log_perf_test"), std::string::npos);
  // The data file holds every point, one block per series.
  const std::string dat = slurp(dir / "dirty-log-perf.dat");
  EXPECT_NE(dat.find("# clear dirty log"), std::string::npos);
  std::filesystem::remove_all(dir);
}

// Bars named by long rows, on a log axis (the bench's kernels against the
// floor): names hang upright below their bars with room made for the
// longest, and the bars stand on the axis's bottom, not on 0.
TEST(Plot, NamedBarsOnALogAxis) {
  Chart c{"bars", "t", "", "x floor", true, {}, {}};
  c.log_y = true;
  const std::string longest = "demote 2M -> 4K (BLOCK/TRACK/DEMOTE, exclusive)";
  c.xtics = {{1, "floor"}, {2, longest}};
  c.add("x floor", 1, 1);
  c.add("x floor", 2, 1200);
  const auto dir = std::filesystem::temp_directory_path() / ("mirrormmu-bars-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string error;
  const auto files = draw_charts(dir.string(), {c}, &error);
  ASSERT_EQ(error, "");
  ASSERT_EQ(files.size(), 2u);
  const std::string gp = slurp(dir / "bars.gp");
  EXPECT_NE(gp.find("set logscale y"), std::string::npos);
  EXPECT_NE(gp.find("set yrange [0.5:*]"), std::string::npos);
  EXPECT_NE(gp.find("rotate by 90 right"), std::string::npos);
  EXPECT_NE(gp.find("set bmargin " + std::to_string(longest.size() / 2 + 2)), std::string::npos);
  EXPECT_NE(slurp(dir / "bars.svg").find("BLOCK/TRACK/DEMOTE"), std::string::npos);
  // A bar shorter than the usual bottom (2M populate against the floor)
  // moves the bottom under it, or it would not be drawn.
  c.add("x floor", 3, 0.08);
  ASSERT_EQ(draw_charts(dir.string(), {c}, &error).size(), 2u) << error;
  EXPECT_NE(slurp(dir / "bars.gp").find("set yrange [0.01:*]"), std::string::npos) << slurp(dir / "bars.gp");
  std::filesystem::remove_all(dir);
}

TEST(Plot, ADirectoryThatIsNotThereIsAnErrorNotACrash) {
  Chart c{"x", "t", "x", "y", false, {}, {{"s", {{1, 2}}}}};
  std::string error;
  const auto files = draw_charts("/nonexistent/dir", {c}, &error);
  EXPECT_TRUE(files.empty());
  EXPECT_NE(error, "");
}

}  // namespace
}  // namespace mirrormmu::test
