// SPDX-License-Identifier: MIT
// --plot DIR: charts drawn by gnuplot (Debian's gnuplot-nox), each as
// NAME.png and NAME.svg, from NAME.dat and the NAME.gp script that made it
// (kept, so a chart can be redrawn or restyled by hand).
#pragma once

#include <string>
#include <vector>

#include "workload/workload.h"

namespace mirrormmu {

// "" when DIR/NAME.png and DIR/NAME.svg were drawn, else why not (one line).
std::string draw_chart(const std::string& dir, const Chart& c);
// Every chart; the files written, or the first error.
std::vector<std::string> draw_charts(const std::string& dir, const std::vector<Chart>& charts, std::string* error);

}  // namespace mirrormmu
