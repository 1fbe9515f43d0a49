// SPDX-License-Identifier: MIT
// mirrormmu merge: the --json reports of the shards of one exploration, put
// back together into the report a single run gives.
#include <fmt/format.h>

#include <cstdio>
#include <fstream>

#include "cli/common.h"
#include "explore/explorer.h"
#include "report/explore_report.h"

namespace mirrormmu::cli {

namespace {

std::vector<std::string> g_inputs;
std::string g_out;

int run_merge() {
  explore::ExploreConfig cfg;
  std::vector<std::pair<int, explore::ExploreReport>> parts;
  std::string first;
  for (const std::string& path : g_inputs) {
    std::ifstream f(path);
    if (!f) usage_error("merge: cannot read '" + path + "'");
    const nlohmann::json j = nlohmann::json::parse(f, nullptr, false);
    if (j.is_discarded()) usage_error("merge: '" + path + "' is not JSON");
    explore::ExploreConfig c;
    explore::ExploreReport r;
    std::string error;
    if (!explore_report_from_json(j, &c, &r, &error)) usage_error("merge: '" + path + "': " + error);
    if (parts.empty()) {
      cfg = c;
      first = path;
    } else if (const std::string why = explore_search_mismatch(cfg, c); !why.empty()) {
      usage_error(fmt::format("merge: '{}' and '{}' are not shards of one search ({})", first, path, why));
    }
    parts.emplace_back(c.shard, std::move(r));
  }
  std::string error;
  const auto merged = explore::merge_reports(parts, cfg.shards, cfg.max_failures, &error);
  if (!merged) usage_error("merge: " + error);
  cfg.shard = 0;
  cfg.shards = 1;
  std::fputs(format_explore_report(cfg, *merged).c_str(), stdout);
  if (!g_out.empty()) {
    std::ofstream o(g_out);
    if (!o) usage_error("cannot write '" + g_out + "'");
    o << explore_report_json(cfg, *merged).dump(2) << "\n";
  }
  return merged->ok() ? 0 : 1;
}

}  // namespace

Command add_merge(CLI::App& app) {
  auto* cmd = app.add_subcommand("merge", "combine the --json reports of `explore --shard I/N` runs into one report");
  cmd->add_option("reports", g_inputs, "the N shards' --json files, in any order")->required();
  cmd->add_option("--json", g_out, "also write the merged report as JSON to FILE");
  return {cmd, &run_merge};
}

}  // namespace mirrormmu::cli
