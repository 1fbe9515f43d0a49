// Shared pieces of the command line.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace mirrormmu::cli {

// One line on stderr, exit status 2.
[[noreturn]] void usage_error(const std::string& msg);

// Each subcommand registers its options, and runs when it was parsed.
struct Command {
  CLI::App* app;
  int (*run)();
};
Command add_run(CLI::App& app);
Command add_explore(CLI::App& app);
Command add_replay(CLI::App& app);
Command add_bench(CLI::App& app);

}  // namespace mirrormmu::cli
