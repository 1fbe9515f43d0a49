// SPDX-License-Identifier: MIT
#include "report/plot.h"

#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>

extern char** environ;

namespace mirrormmu {

namespace {

// gnuplot strings are double-quoted: escape what would end one.
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string run_gnuplot(const std::string& script) {
  pid_t pid = 0;
  const char* argv[] = {"gnuplot", script.c_str(), nullptr};
  if (posix_spawnp(&pid, "gnuplot", nullptr, nullptr, const_cast<char* const*>(argv), environ) != 0)
    return "gnuplot is not installed (apt-get install gnuplot-nox)";
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return fmt::format("gnuplot failed on {}", script);
  return "";
}

}  // namespace

std::string draw_chart(const std::string& dir, const Chart& c) {
  const std::string base = dir + "/" + c.name;
  {
    // One block per series (gnuplot's "index"), blank lines between.
    std::ofstream dat(base + ".dat");
    if (!dat) return "cannot write " + base + ".dat";
    for (const auto& s : c.series) {
      dat << "# " << s.label << "\n";
      for (const auto& [x, y] : s.points) dat << fmt::format("{} {}\n", x, y);
      dat << "\n\n";
    }
  }
  std::ofstream gp(base + ".gp");
  if (!gp) return "cannot write " + base + ".gp";
  gp << "set title " << quoted(c.title) << "\n"
     << "set xlabel " << quoted(c.xlabel) << "\n"
     << "set ylabel " << quoted(c.ylabel) << "\n"
     << "set grid\nset key outside right top\n";
  // Bars of a log axis stand on its bottom, which must then be above 0, and
  // below the shortest bar (2M populate is a tenth of the floor), or that
  // bar is not drawn at all: a power of ten under half of it, 0.5 at most.
  if (c.log_y) {
    double bottom = 0.5;
    for (const auto& s : c.series)
      for (const auto& [x, y] : s.points)
        if (y > 0 && y < 2 * bottom) bottom = std::pow(10.0, std::floor(std::log10(y / 2)));
    gp << fmt::format("set logscale y\nset yrange [{}:*]\n", bottom);
  } else {
    gp << "set yrange [0:*]\n";
  }
  if (c.bars) gp << "set style fill solid 0.6 border -1\nset boxwidth 0.8 relative\n";
  // Row names are long ("populate 4K, mirror + TDX (AUG), 2 threads"):
  // upright, hanging from their tick, with a bottom margin (in character
  // heights) and a canvas that grow with the longest, so that none is cut
  // and the plot keeps its height. Slanted ones ran off the canvas's edge.
  int height = 600;
  if (!c.xtics.empty()) {
    size_t longest = 0;
    gp << "set xtics rotate by 90 right (";
    for (size_t i = 0; i < c.xtics.size(); i++) {
      gp << (i ? ", " : "") << quoted(c.xtics[i].second) << " " << c.xtics[i].first;
      longest = std::max(longest, c.xtics[i].second.size());
    }
    const int margin = static_cast<int>(longest / 2) + 2;
    gp << ")\nset bmargin " << margin << "\n";
    height += margin * 18;
  }
  std::string plot = "plot ";
  for (size_t i = 0; i < c.series.size(); i++) {
    const bool one_point = c.series[i].points.size() == 1;
    plot += fmt::format("{}{} index {} using 1:2 with {} title {}", i ? ", " : "", quoted(c.name + ".dat"), i,
                        c.bars ? "boxes" : one_point ? "points pointtype 7" : "linespoints pointtype 7",
                        quoted(c.series[i].label));
  }
  // Whole-numbered x values (iterations, vCPUs, operations) get whole ticks.
  bool whole = c.xtics.empty();
  double lo = 1e300, hi = -1e300;
  for (const auto& s : c.series)
    for (const auto& [x, y] : s.points) {
      whole = whole && x == double(int64_t(x));
      lo = std::min(lo, x);
      hi = std::max(hi, x);
    }
  if (whole && hi >= lo && hi - lo <= 40) gp << "set xtics 1\n";
  if (c.bars && hi >= lo) gp << fmt::format("set xrange [{}:{}]\n", lo - 0.6, hi + 0.6);
  // noenhanced: names like dirty_log_perf_test are not subscripts.
  for (const auto& [term, ext] : {std::pair{"pngcairo", "png"}, std::pair{"svg", "svg"}})
    gp << "set terminal " << term << " noenhanced size 1000," << height << "\nset output "
       << quoted(c.name + "." + ext) << "\n" << plot << "\n";
  gp.close();
  // gnuplot resolves the data file against its working directory: run it
  // from DIR.
  const std::string cd_script = fmt::format("{}/.{}.gp", dir, c.name);
  {
    std::ofstream w(cd_script);
    w << "cd " << quoted(dir) << "\nload " << quoted(c.name + ".gp") << "\n";
  }
  const std::string err = run_gnuplot(cd_script);
  std::remove(cd_script.c_str());
  return err;
}

std::vector<std::string> draw_charts(const std::string& dir, const std::vector<Chart>& charts, std::string* error) {
  std::vector<std::string> files;
  for (const Chart& c : charts) {
    if (c.series.empty()) continue;
    if (std::string e = draw_chart(dir, c); !e.empty()) {
      *error = e;
      return files;
    }
    files.push_back(dir + "/" + c.name + ".png");
    files.push_back(dir + "/" + c.name + ".svg");
  }
  return files;
}

}  // namespace mirrormmu
