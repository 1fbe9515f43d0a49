// SPDX-License-Identifier: MIT
// mirrormmu sites: every named bug/warn/lockdep site, its kind, what it
// means, and every place in the code that can fire it.
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "base/bug.h"
#include "cli/common.h"
#include "cli/last_table.h"

namespace mirrormmu::cli {

namespace {

struct SiteLocation {
  Site site;
  const char* file;
  int line;
};

// Generated at build time from the sources (cmake/site_locations.cmake).
const SiteLocation kLocations[] = {
#include "site_locations.inc"
};

std::string g_json;

int run() {
  std::map<size_t, std::vector<std::string>> where;
  for (const auto& l : kLocations) where[static_cast<size_t>(l.site)].push_back(fmt::format("{}:{}", l.file, l.line));
  const auto last = load_last_table();
  if (last)
    std::printf("designs that reached each site: the last `mirrormmu table` (%s, %s)\n\n", last->computed.c_str(),
                last->path.c_str());
  else
    std::printf("which designs reach each site: run `mirrormmu table` first (nothing computed yet)\n\n");
  auto joined = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  };
  nlohmann::json j = nlohmann::json::array();
  for (size_t i = 0; i < kSiteCount; i++) {
    const SiteInfo& s = site_info(static_cast<Site>(i));
    const auto& locs = where[i];
    std::printf("%-32s %-16s %s\n", std::string(s.id).c_str(), std::string(bug_kind_name(s.kind)).c_str(),
                std::string(s.text).c_str());
    for (const auto& l : locs) std::printf("%-32s %-16s   at %s\n", "", "", l.c_str());
    if (locs.empty()) std::printf("%-32s %-16s   (named nowhere outside the tracker: never fires)\n", "", "");
    std::vector<std::string> reached, driven;
    if (last) {
      const std::string id(s.id);
      if (auto it = last->reached.find(id); it != last->reached.end()) reached = it->second;
      if (auto it = last->driven.find(id); it != last->driven.end()) driven = it->second;
      if (!reached.empty()) std::printf("%-32s %-16s   reached by: %s\n", "", "", joined(reached).c_str());
      if (!driven.empty()) std::printf("%-32s %-16s   only when driven directly: %s\n", "", "", joined(driven).c_str());
      if (reached.empty() && driven.empty()) std::printf("%-32s %-16s   reached by no design\n", "", "");
    }
    nlohmann::json e = {{"id", s.id}, {"kind", bug_kind_name(s.kind)}, {"meaning", s.text}, {"locations", locs}};
    if (last) {
      e["reached_by"] = reached;
      e["driven_only"] = driven;
    }
    j.push_back(std::move(e));
  }
  if (!g_json.empty()) {
    std::ofstream f(g_json);
    if (!f) usage_error("cannot write '" + g_json + "'");
    f << j.dump(2) << "\n";
  }
  return 0;
}

}  // namespace

Command add_sites(CLI::App& app) {
  auto* cmd = app.add_subcommand("sites", "list every bug/warn/lockdep site: kind, meaning, and where it fires");
  cmd->add_option("--json", g_json, "also write the list as JSON to FILE");
  return {cmd, &run};
}

}  // namespace mirrormmu::cli
