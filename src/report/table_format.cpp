// SPDX-License-Identifier: MIT
// The transition table as text, Markdown and JSON, and the differences
// between two designs' tables.
#include <fmt/format.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "report/table.h"

namespace mirrormmu::report {

namespace {

std::string site_str(Site s) {
  return fmt::format("{} {}", bug_kind_name(site_info(s).kind), site_info(s).id);
}

std::string refused_str(const RowResult& r) {
  std::string s;
  for (const auto& [e, n] : r.refused) s += fmt::format("{}{} x{}", s.empty() ? "" : ", ", errno_str(e), n);
  return s;
}

// Each site with the execution or run that led there, for a Markdown cell.
std::string sites_md(const std::map<Site, SiteSeen>& m) {
  std::string s;
  for (const auto& [site, seen] : m)
    s += fmt::format("{}{} x{}: `{}`", s.empty() ? "" : "<br>", site_str(site), seen.hits, seen.first.command);
  return s;
}

std::string drive_str(const DriveResult& d) {
  std::string s = "driven directly: " + d.outcome;
  for (Site site : d.sites) s += "; " + site_str(site);
  for (const auto& v : d.violations) s += "; " + v;
  return s;
}

std::string totals(const DesignTable& t) {
  size_t reached = 0;
  for (const auto& r : t.rows) reached += r.attempts != 0;
  return fmt::format("{} of {} rows reached in {} explorer executions and {} workload runs ({:.1f} s)", reached,
                     kTableRows, t.executions, t.runs, t.seconds);
}

std::string evidence_line(const Evidence& e) {
  return e.command + (e.injected.empty() ? "" : "   [injected: " + e.injected + "]");
}

void text_table(std::string& out, const DesignTable& t) {
  out += fmt::format("transition table of __handle_changed_spte(), design {}\n", t.design);
  out += "  " + totals(t) + "\n";
  out += "  kinds as handle_changed_spte sees them: FROZEN_SPTE is non-present\n";
  for (const auto& s : t.skipped) out += "  skipped: " + s + "\n";
  for (const auto& s : t.failures) out += "  FAILED: " + s + "\n";
  out += "\n";
  for (size_t i = 0; i < kTableRows; i++) {
    const RowResult& r = t.rows[i];
    const RowKey k = row_key(i);
    if (!r.attempts) continue;
    out += fmt::format("{:<42} reached {}", k.name(), r.attempts);
    if (!r.refused.empty()) out += ", refused " + refused_str(r);
    out += "\n";
    std::string by;
    for (const auto& [src, n] : r.by_source) by += fmt::format("{}{} {}", by.empty() ? "" : ", ", src, n);
    out += "    by: " + by + "\n";
    out += "    evidence: " + evidence_line(r.reached) + "\n";
    if (!r.refused.empty() && r.refused_first.command != r.reached.command)
      out += "    refused: " + evidence_line(r.refused_first) + "\n";
    for (const auto& [site, seen] : r.sites)
      out += fmt::format("    site {} x{} in {} execution(s)/run(s): {}\n", site_str(site), seen.hits, seen.sources,
                         evidence_line(seen.first));
  }
  out += fmt::format("\nnot reached in {} explorer executions and {} workload runs:\n", t.executions, t.runs);
  for (size_t i = 0; i < kTableRows; i++) {
    const RowResult& r = t.rows[i];
    if (r.attempts) continue;
    out += fmt::format("{:<42} {}\n", row_key(i).name(), r.drive.attempted ? drive_str(r.drive) : "not driven");
  }
  auto other = [&](const char* title, const std::map<Site, SiteSeen>& m) {
    if (m.empty()) return;
    out += fmt::format("\n{}:\n", title);
    for (const auto& [site, seen] : m)
      out += fmt::format("  {} x{} in {} execution(s)/run(s): {}\n", site_str(site), seen.hits, seen.sources,
                         evidence_line(seen.first));
  };
  other("sites hit outside any change (setup, teardown, hooks before handle_changed_spte, vCPU entry)", t.outside);
  other("sites hit in RCU callbacks", t.rcu);
}

std::string md_cell(std::string s) {
  for (size_t p = 0; (p = s.find('|', p)) != std::string::npos; p += 2) s.replace(p, 1, "\\|");
  return s;
}

void markdown_table(std::string& out, const DesignTable& t) {
  out += fmt::format("### `{}`\n\n{}. FROZEN_SPTE counts as non-present.\n\n", t.design, totals(t));
  for (const auto& s : t.failures) out += "**FAILED**: " + md_cell(s) + "\n\n";
  out += "| old -> new, lock, root | reached | refused | sites | evidence |\n|---|---|---|---|---|\n";
  for (size_t i = 0; i < kTableRows; i++) {
    const RowResult& r = t.rows[i];
    const std::string name = row_key(i).name();
    if (r.attempts) {
      out += fmt::format("| {} | {} | {} | {} | `{}` |\n", name, r.attempts, md_cell(refused_str(r)),
                         md_cell(sites_md(r.sites)), md_cell(r.reached.command));
    } else {
      out += fmt::format("| {} | not reached | | | {} |\n", name,
                         md_cell(r.drive.attempted ? drive_str(r.drive) : "not driven"));
    }
  }
  out += "\n";
}

nlohmann::json evidence_json(const Evidence& e) {
  return {{"source", e.source}, {"command", e.command}, {"injected", e.injected}};
}

nlohmann::json sites_json(const std::map<Site, SiteSeen>& m) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& [s, seen] : m)
    j.push_back({{"site", site_info(s).id},
                 {"kind", bug_kind_name(site_info(s).kind)},
                 {"hits", seen.hits},
                 {"sources", seen.sources},
                 {"evidence", evidence_json(seen.first)}});
  return j;
}

nlohmann::json table_json(const DesignTable& t) {
  nlohmann::json rows = nlohmann::json::array();
  for (size_t i = 0; i < kTableRows; i++) {
    const RowResult& r = t.rows[i];
    const RowKey k = row_key(i);
    nlohmann::json j = {{"old", row_kind_name(k.old_kind)},
                        {"new", row_kind_name(k.new_kind)},
                        {"lock", k.shared ? "shared" : "exclusive"},
                        {"root", k.mirror ? "mirror" : "direct"},
                        {"reached", r.attempts},
                        {"by_source", r.by_source},
                        {"sites", sites_json(r.sites)}};
    if (r.attempts) j["evidence"] = evidence_json(r.reached);
    nlohmann::json refused = nlohmann::json::object();
    for (const auto& [e, n] : r.refused) refused[errno_str(e)] = n;
    j["refused"] = refused;
    if (!r.refused.empty()) j["refused_evidence"] = evidence_json(r.refused_first);
    if (r.drive.attempted) {
      nlohmann::json ds = nlohmann::json::array();
      for (Site s : r.drive.sites) ds.push_back(site_info(s).id);
      j["driven"] = {{"outcome", r.drive.outcome}, {"sites", ds}, {"violations", r.drive.violations}};
    }
    rows.push_back(std::move(j));
  }
  return {{"design", t.design},   {"executions", t.executions},     {"runs", t.runs},
          {"seconds", t.seconds}, {"skipped", t.skipped},           {"failures", t.failures}, {"rows", rows},
          {"outside", sites_json(t.outside)}, {"rcu_callbacks", sites_json(t.rcu)}};
}

// What a row says, reduced to what two designs can disagree on.
std::string verdict(const RowResult& r) {
  std::string s;
  if (r.attempts) {
    s = "reached";
    if (!r.refused.empty()) {
      s += "; refused";
      for (const auto& [e, n] : r.refused) s += " " + errno_str(e);
    }
  } else {
    s = "not reached" + (r.drive.attempted ? " (" + drive_str(r.drive) + ")" : "");
  }
  for (const auto& [site, seen] : r.sites) s += "; " + site_str(site);
  return s;
}

}  // namespace

std::string format_tables(const std::vector<DesignTable>& tables, TableFormat f) {
  std::string out;
  if (f == TableFormat::Json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& t : tables) j.push_back(table_json(t));
    return j.dump(2) + "\n";
  }
  for (size_t i = 0; i < tables.size(); i++) {
    if (i) out += "\n";
    if (f == TableFormat::Markdown) markdown_table(out, tables[i]);
    else text_table(out, tables[i]);
  }
  return out;
}

std::string format_table_diff(const DesignTable& a, const DesignTable& b, TableFormat f) {
  std::vector<std::tuple<std::string, std::string, std::string>> diffs;
  for (size_t i = 0; i < kTableRows; i++) {
    const std::string va = verdict(a.rows[i]), vb = verdict(b.rows[i]);
    if (va != vb) diffs.emplace_back(row_key(i).name(), va, vb);
  }
  if (f == TableFormat::Json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& [row, va, vb] : diffs) j.push_back({{"row", row}, {a.design, va}, {b.design, vb}});
    return nlohmann::json{{"differences", j}}.dump(2) + "\n";
  }
  std::string out;
  if (f == TableFormat::Markdown) {
    out += fmt::format("### `{}` vs `{}`: {} rows differ\n\n| row | {} | {} |\n|---|---|---|\n", a.design,
                       b.design, diffs.size(), a.design, b.design);
    for (const auto& [row, va, vb] : diffs) out += fmt::format("| {} | {} | {} |\n", row, md_cell(va), md_cell(vb));
    return out;
  }
  out += fmt::format("differences, {} vs {}: {} of {} rows\n", a.design, b.design, diffs.size(), kTableRows);
  for (const auto& [row, va, vb] : diffs)
    out += fmt::format("  {}\n    {:<14} {}\n    {:<14} {}\n", row, a.design + ":", va, b.design + ":", vb);
  return out;
}

}  // namespace mirrormmu::report
