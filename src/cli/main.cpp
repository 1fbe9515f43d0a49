// SPDX-License-Identifier: MIT
// mirrormmu: the command line.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

#include "base/printable.h"
#include "cli/common.h"
#include "workload/explored.h"
#include "workload/plain_explored.h"
#ifdef MIRRORMMU_HAVE_KERNEL_MMU
#include "oracle/kernel_backend.h"
#endif

namespace mirrormmu::cli {

void usage_error(const std::string& msg) {
  // One line whatever the message quotes back (a flag's value with a newline).
  std::fprintf(stderr, "mirrormmu: error: %s\n", printable(msg, 4096).c_str());
  std::exit(2);
}

void check_output_path(const std::string& flag, const std::string& path) {
  if (path.empty()) return;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    // A FIFO would block the run at its end, a device would take anything.
    if (!S_ISREG(st.st_mode)) usage_error(fmt::format("{}: '{}' exists and is not a regular file", flag, path));
    if (::access(path.c_str(), W_OK) != 0) usage_error(fmt::format("{}: '{}' is not writable", flag, path));
    return;
  }
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    usage_error(fmt::format("{}: directory '{}' of '{}' does not exist", flag, dir, path));
  if (::access(dir.c_str(), W_OK) != 0) usage_error(fmt::format("{}: directory '{}' is not writable", flag, dir));
}

void check_output_dir(const std::string& flag, const std::string& dir) {
  if (dir.empty()) return;
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    usage_error(fmt::format("{}: '{}' is not a directory", flag, dir));
  if (::access(dir.c_str(), W_OK) != 0) usage_error(fmt::format("{}: directory '{}' is not writable", flag, dir));
}

}  // namespace mirrormmu::cli

int main(int argc, char** argv) {
  using namespace mirrormmu::cli;
  mirrormmu::register_workload_source();
  mirrormmu::register_plain_source();
#ifdef MIRRORMMU_HAVE_KERNEL_MMU
  mirrormmu::oracle::register_kernel_mmu();
#endif
  CLI::App app{"mirrormmu: KVM's TDP MMU with TDX mirror page tables, a TDX module model and a checker"};
  app.require_subcommand(1);
  const Command cmds[] = {add_run(app), add_explore(app), add_replay(app), add_bench(app), add_compare(app), add_sites(app),
                          add_table(app), add_merge(app)};
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    const std::string msg = e.what();
    usage_error(msg.empty() ? "bad usage (see --help)" : msg);
  }
  for (const auto& c : cmds)
    if (c.app->parsed()) return c.run();
  return 2;
}
