// SPDX-License-Identifier: MIT
// Shared pieces of the command line.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "explore/explorer.h"

#include "workload/shared_life.h"
#include "workload/workload.h"

namespace mirrormmu::cli {

// One line on stderr, exit status 2.
[[noreturn]] void usage_error(const std::string& msg);
// An output file (--json FILE, --perfetto FILE) the run could not write at
// its end is refused before it starts: a regular file that is writable, or
// a new one in a writable directory.
void check_output_path(const std::string& flag, const std::string& path);
// An output directory (--plot DIR): it exists, is a directory and writable.
void check_output_dir(const std::string& flag, const std::string& dir);

// Each subcommand registers its options, and runs when it was parsed.
struct Command {
  CLI::App* app;
  int (*run)();
};
Command add_run(CLI::App& app);
Command add_explore(CLI::App& app);
Command add_replay(CLI::App& app);
Command add_bench(CLI::App& app);
Command add_compare(CLI::App& app);
Command add_sites(CLI::App& app);
Command add_table(CLI::App& app);
Command add_merge(CLI::App& app);

// The options of a workload run (all but --design), shared by run and compare.
void add_workload_options(CLI::App* cmd, WorkloadConfig& cfg);
// `run demand-paging|dirty-log-perf|private-mem-conversions [selftest flags]`:
// each workload modelled on a selftest takes that test's own flags.
void add_selftest_commands(CLI::App* run_cmd, WorkloadConfig& cfg);
// After parsing: the selftest subcommand given (if any) names the workload,
// and its defaults apply where the flags left them.
void apply_selftest_command(CLI::App* run_cmd, WorkloadConfig& cfg);
// test_util's parse_size(): [0-9]+ (or 0x...) with an optional k/m/g/t/b
// suffix; one line and exit 2 on anything else or on overflow.
uint64_t parse_size_arg(const std::string& flag, const std::string& text);
// Exits 2 with one line if the options cannot describe a run.
void validate_workload_options(const WorkloadConfig& cfg);
// shared-life from the workload options a plain VM understands, with every
// TD-only flag that was given refused (`what` names the command), the MMU
// name checked and --gib range-checked: one line and exit 2 otherwise.
SharedLifeConfig shared_life_options(CLI::App* cmd, const WorkloadConfig& cfg, int iterations,
                                     const std::vector<std::string>& mmus, const std::string& what);
// --jobs J: the search (or this shard I/M of it) split J ways, one forked
// process each, merged as `mirrormmu merge` would.
std::optional<explore::ExploreReport> explore_jobs(const explore::ExploreConfig& cfg, int jobs, std::string* error);

std::string designs_help();
std::string what_ifs_help();

}  // namespace mirrormmu::cli
