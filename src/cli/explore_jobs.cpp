// SPDX-License-Identifier: MIT
#include <fmt/format.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "report/explore_report.h"

namespace mirrormmu::cli {

// --jobs J: the search (or this shard I/M of it) split J ways, one forked
// process each (the deterministic engine is one per process), merged as
// `mirrormmu merge` would. Shard I + M*j of M*J for j < J is exactly shard
// I of M again, for DFS and PCT/random alike. A budget is the whole
// search's: DFS shares it out, PCT/random count it globally already.
std::optional<explore::ExploreReport> explore_jobs(const explore::ExploreConfig& cfg, int jobs, std::string* error) {
  char dir[] = "/tmp/mirrormmu-jobs-XXXXXX";
  if (!mkdtemp(dir)) {
    *error = "--jobs: cannot create a directory in /tmp";
    return std::nullopt;
  }
  std::fflush(nullptr);
  std::vector<pid_t> pids;
  auto remove_dir = [&] {
    for (int j = 0; j < jobs; j++) std::remove(fmt::format("{}/{}.json", dir, j).c_str());
    rmdir(dir);
  };
  for (int j = 0; j < jobs; j++) {
    explore::ExploreConfig c = cfg;
    c.shard = cfg.shard + cfg.shards * j;
    c.shards = cfg.shards * jobs;
    if (c.strategy == explore::StrategyKind::Dfs)
      c.budget = std::max<uint64_t>(1, cfg.budget / jobs + (uint64_t(j) < cfg.budget % jobs ? 1 : 0));
    const pid_t pid = fork();
    if (pid < 0) {
      // The jobs already running would search a part nobody merges.
      for (pid_t p : pids) kill(p, SIGKILL);
      for (pid_t p : pids) waitpid(p, nullptr, 0);
      remove_dir();
      *error = fmt::format("--jobs: fork of job {} of {} failed", j + 1, jobs);
      return std::nullopt;
    }
    if (pid == 0) {
      std::string e;
      const auto r = explore::explore(c, nullptr, &e);
      std::ofstream f(fmt::format("{}/{}.json", dir, j));
      if (r) f << explore_report_json(c, *r).dump() << "\n";
      f.close();
      _exit(r && f ? 0 : 3);
    }
    pids.push_back(pid);
  }
  std::vector<std::pair<int, explore::ExploreReport>> parts;
  bool all_ok = true;
  for (size_t j = 0; j < pids.size(); j++) {
    int status = 0;
    waitpid(pids[j], &status, 0);
    all_ok = all_ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  for (int j = 0; j < jobs && all_ok; j++) {
    const std::string path = fmt::format("{}/{}.json", dir, j);
    std::ifstream f(path);
    const nlohmann::json js = nlohmann::json::parse(f, nullptr, false);
    explore::ExploreConfig c;
    explore::ExploreReport r;
    std::string e;
    if (js.is_discarded() || !explore_report_from_json(js, &c, &r, &e)) all_ok = false;
    else parts.emplace_back(j, std::move(r));
  }
  remove_dir();
  if (!all_ok) {
    *error = "--jobs: a job died before writing its report";
    return std::nullopt;
  }
  return explore::merge_reports(parts, jobs, cfg.max_failures, error);
}

}  // namespace mirrormmu::cli
