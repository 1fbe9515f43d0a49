// SPDX-License-Identifier: MIT
// mirrormmu table [--designs A,B] [--format text|markdown|json]
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "cli/last_table.h"
#include "mmu/design.h"
#include "report/table.h"

namespace mirrormmu::cli {

namespace {

std::vector<std::string> g_designs;
std::vector<std::string> g_mmus;
std::string g_format = "text";
std::string g_json;
report::TableConfig g_cfg;
bool g_quiet = false;

report::TableFormat format_of(const std::string& s) {
  if (s == "markdown") return report::TableFormat::Markdown;
  if (s == "json") return report::TableFormat::Json;
  return report::TableFormat::Text;
}

int run() {
  if (!g_mmus.empty() && !g_designs.empty()) usage_error("--designs and --mmu tabulate different things; give one");
  if (g_designs.empty() && g_mmus.empty())
    for (const auto& d : designs()) g_designs.push_back(d.name);
  for (const auto& d : g_designs) {
    std::string design, error;
    WhatIf w;
    if (!parse_design_spec(d, &design, &w, &error)) usage_error("--designs: " + error);
  }
  std::vector<report::DesignTable> tables;
  const report::TableProgress progress = [](const std::string& what) {
    if (!g_quiet) std::fprintf(stderr, "... %s\n", what.c_str());
  };
  for (const auto& m : g_mmus) {
    std::string error;
    auto t = report::compute_mmu_table(m, g_cfg, progress, &error);
    if (!t) usage_error(error);
    tables.push_back(std::move(*t));
  }
  for (const auto& d : g_designs) {
    std::string error;
    auto t = report::compute_table(d, g_cfg, progress, &error);
    if (!t) usage_error(error);
    tables.push_back(std::move(*t));
  }
  const auto f = format_of(g_format);
  std::string out = report::format_tables(tables, f);
  if (tables.size() == 2) out += (f == report::TableFormat::Json ? "" : "\n") + report::format_table_diff(tables[0], tables[1], f);
  std::fputs(out.c_str(), stdout);
  if (!g_json.empty()) {
    std::ofstream file(g_json);
    if (!file) usage_error("cannot write '" + g_json + "'");
    file << report::format_tables(tables, report::TableFormat::Json);
  }
  // `sites` reads the designs' tables; an MMU table names no design.
  if (g_mmus.empty()) save_last_table(tables);
  // A design's table reports its sites as findings; an MMU table's failures
  // are invariants the MMU broke, and the exit code says so.
  for (const auto& t : tables)
    if (!t.failures.empty()) return 1;
  return 0;
}

}  // namespace

Command add_table(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "table",
      "compute the transition table of __handle_changed_spte per design: every old kind x new kind x lock x root, "
      "reached by which scenario or run (with a replay string or command), refused by the design, and the sites "
      "hit there under injected failures; rows nothing reaches are driven directly");
  cmd->add_option("--designs", g_designs, "comma-separated designs (default: all); two print their differences too")
      ->delimiter(',');
  cmd->add_option("--mmu", g_mmus,
                  "tabulate a plain VM's direct root on these MMUs instead (model, model-6.12, kernel: the "
                  "kernel tree's own tdp_mmu.c in a binary built by `make oracle`), from its races explored and "
                  "shared-life runs; two print their differences too")
      ->delimiter(',');
  cmd->add_option("--format", g_format, "text, markdown or json")
      ->check(CLI::IsMember({"text", "markdown", "json"}))
      ->capture_default_str();
  cmd->add_option("--json", g_json, "also write the tables as JSON to FILE");
  cmd->add_option("--executions", g_cfg.executions_per_pass,
                  "explorer executions per scenario and pass (one pass of interleavings, one of injected failures)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_flag("!--no-drive", g_cfg.drive, "do not drive the rows nothing reached");
  cmd->add_flag("--quiet", g_quiet, "no progress lines on stderr");
  return {cmd, &run};
}

}  // namespace mirrormmu::cli
