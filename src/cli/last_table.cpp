// SPDX-License-Identifier: MIT
#include "cli/last_table.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <algorithm>

#include "mmu/design.h"

namespace mirrormmu::cli {

namespace {

// site id -> design -> "reached" or "driven"
using SiteDesigns = std::map<std::string, std::map<std::string, std::string>>;

void note(SiteDesigns& m, Site s, const std::string& design, const char* how) {
  auto& slot = m[std::string(site_info(s).id)][design];
  if (slot != "reached") slot = how;
}

}  // namespace

std::string last_table_path() {
  if (const char* d = std::getenv("MIRRORMMU_CACHE_DIR"); d && *d) return std::string(d) + "/last-table.json";
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d && *d) return std::string(d) + "/mirrormmu/last-table.json";
  if (const char* d = std::getenv("HOME"); d && *d) return std::string(d) + "/.cache/mirrormmu/last-table.json";
  return "";
}

void save_last_table(const std::vector<report::DesignTable>& tables) {
  const std::string path = last_table_path();
  if (path.empty()) return;
  nlohmann::json j = nlohmann::json::object();
  if (std::ifstream in(path); in) j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_object() || !j.contains("designs") || !j["designs"].is_object()) j = {{"designs", nlohmann::json::object()}};
  const std::string now = fmt::format("{:%Y-%m-%d %H:%M} UTC", fmt::gmtime(std::time(nullptr)));
  for (const auto& t : tables) {
    SiteDesigns m;
    for (const auto& row : t.rows) {
      for (const auto& [s, seen] : row.sites) note(m, s, t.design, "reached");
      for (Site s : row.drive.sites) note(m, s, t.design, "driven");
    }
    for (const auto& [s, seen] : t.outside) note(m, s, t.design, "reached");
    for (const auto& [s, seen] : t.rcu) note(m, s, t.design, "reached");
    nlohmann::json sites = nlohmann::json::object();
    for (const auto& [site, by] : m) sites[site] = by.begin()->second;
    j["designs"][t.design] = {{"computed", now}, {"sites", sites}};
  }
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  std::ofstream out(path);
  if (out) out << j.dump(2) << "\n";
}

std::optional<LastTable> load_last_table() {
  const std::string path = last_table_path();
  std::ifstream in(path);
  if (path.empty() || !in) return std::nullopt;
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_object() || !j.contains("designs") || !j["designs"].is_object()) return std::nullopt;
  LastTable t;
  t.path = path;
  std::set<std::string> times;
  for (const auto& [design, d] : j["designs"].items()) {
    if (!d.is_object() || !d.contains("sites") || !d["sites"].is_object()) continue;
    if (d.contains("computed") && d["computed"].is_string()) times.insert(d["computed"].get<std::string>());
    for (const auto& [site, how] : d["sites"].items())
      (how == "reached" ? t.reached : t.driven)[site].push_back(design);
  }
  t.computed = times.empty() ? "" : *times.rbegin();
  // In the order --help lists the designs.
  auto rank = [](const std::string& spec) {
    const std::string name = spec.substr(0, spec.find('+'));
    for (size_t i = 0; i < designs().size(); i++)
      if (designs()[i].name == name) return i;
    return designs().size();
  };
  for (auto* m : {&t.reached, &t.driven})
    for (auto& [site, v] : *m)
      std::stable_sort(v.begin(), v.end(), [&](const auto& a, const auto& b) { return rank(a) < rank(b); });
  return t;
}

}  // namespace mirrormmu::cli
