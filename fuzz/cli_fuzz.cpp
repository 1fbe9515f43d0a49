// SPDX-License-Identifier: MIT
// The command line's parser: the input is split into arguments at NUL and
// newline bytes and parsed by the same subcommands and options as
// `mirrormmu` (nothing runs). Bad usage must end in CLI11's parse error or
// in usage_error(), which here throws instead of exiting.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/common.h"

namespace mirrormmu::cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// main() prints printable(msg): one line whatever the message quotes.
void usage_error(const std::string& msg) {
  if (msg.empty()) __builtin_trap();
  throw UsageError(msg);
}

void check_output_path(const std::string&, const std::string&) {}
void check_output_dir(const std::string&, const std::string&) {}

}  // namespace mirrormmu::cli

using namespace mirrormmu::cli;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> args{"mirrormmu"};
  std::string cur;
  for (size_t i = 0; i < size && args.size() < 40; i++) {
    const char c = static_cast<char>(data[i]);
    if (c == '\0' || c == '\n') {
      args.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) args.push_back(cur);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  CLI::App app{"mirrormmu"};
  app.require_subcommand(1);
  add_run(app);
  add_explore(app);
  add_replay(app);
  add_bench(app);
  add_compare(app);
  add_sites(app);
  add_table(app);
  add_merge(app);
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::Error&) {
  } catch (const UsageError&) {
  }
  return 0;
}
