// SPDX-License-Identifier: MIT
#include "report/compare.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "mmu/design.h"

namespace mirrormmu {

namespace {

using nlohmann::json;

// A section's rows, keyed by label, each with one cell per column.
struct Section {
  explicit Section(std::string t) : title(std::move(t)) {}
  std::string title;
  std::vector<std::string> order;
  std::map<std::string, std::vector<std::string>> cells;

  void set(const std::string& label, size_t col, size_t ncols, std::string v) {
    auto [it, fresh] = cells.try_emplace(label, std::vector<std::string>(ncols, "0"));
    if (fresh) order.push_back(label);
    it->second[col] = std::move(v);
  }
};

std::string count(const json& j) { return j.is_number() ? fmt::format("{}", j.get<uint64_t>()) : "0"; }

// A member as a value the caller can iterate (value() returns a temporary,
// and a range-for over its items() would outlive it).
json member(const json& s, const char* key, json fallback = json::object()) {
  return s.contains(key) ? s[key] : fallback;
}

}  // namespace

std::string format_compare(const std::vector<CompareColumn>& cols) {
  const size_t n = cols.size();
  std::vector<Section> sections;
  for (const char* t : {"external hook calls (failed)", "SEAMCALLs by leaf: status", "mmu_lock acquisitions",
                        "SPTE transitions by class", "huge pages", "bug/warn sites hit", "invariant failures",
                        "result"})
    sections.emplace_back(t);
  auto& hooks = sections[0];
  auto& seam = sections[1];
  auto& lock = sections[2];
  auto& trans = sections[3];
  auto& huge = sections[4];
  auto& sites = sections[5];
  auto& fails = sections[6];
  auto& result = sections[7];

  for (size_t c = 0; c < n; c++) {
    const CompareColumn& col = cols[c];
    if (!col.refused.empty()) {
      result.set("outcome", c, n, "refused");
      continue;
    }
    const json& s = col.summary;
    const json hooks_j = member(s, "hooks"), seam_j = member(s, "seamcalls"), lock_j = member(s, "mmu_lock"),
               trans_j = member(s, "transitions"), sites_j = member(s, "bug_sites"),
               viol_j = member(s, "violations", json::array());
    for (const auto& [k, v] : hooks_j.items()) {
      const uint64_t calls = v.value("calls", uint64_t{0}), failed = v.value("failed", uint64_t{0});
      if (calls) hooks.set(k, c, n, failed ? fmt::format("{} ({})", calls, failed) : fmt::format("{}", calls));
    }
    for (const auto& [leaf, v] : seam_j.items()) {
      const json statuses = member(v, "statuses");
      for (const auto& [st, cnt] : statuses.items()) seam.set(leaf + ": " + st, c, n, count(cnt));
    }
    for (const auto& [k, v] : lock_j.items()) lock.set(k, c, n, count(v));
    for (const auto& [k, v] : trans_j.items()) trans.set(k, c, n, count(v));
    for (const char* k : {"splits", "demotes", "accept_mismatches"})
      if (s.contains(k)) huge.set(k, c, n, count(s[k]));
    for (const auto& [k, v] : sites_j.items()) sites.set(k, c, n, count(v));
    std::map<std::string, uint64_t> by_inv;
    for (const auto& v : viol_j) by_inv[v.value("invariant", std::string("?"))]++;
    for (const auto& [k, v] : by_inv) fails.set(k, c, n, fmt::format("{}", v));
    fails.set("total", c, n, fmt::format("{}", viol_j.size()));
    result.set("pages leaked", c, n, count(s.value("pages_leaked", json())));
    result.set("wall time (s)", c, n, fmt::format("{:.2f}", s.value("seconds", 0.0)));
    result.set("outcome", c, n, s.value("ok", false) ? "OK" : "FAILED");
  }

  // A design that did not run has no numbers, not zeros.
  for (size_t c = 0; c < n; c++) {
    if (cols[c].refused.empty()) continue;
    for (auto& sec : sections)
      for (auto& [label, cells] : sec.cells)
        if (&sec != &result || label != "outcome") cells[c].assign(1, '-');
  }

  size_t label_w = 10;
  for (const auto& sec : sections)
    for (const auto& l : sec.order) label_w = std::max(label_w, l.size() + 4);
  label_w = std::min<size_t>(label_w, 64);
  size_t cell_w = 12;
  for (const auto& col : cols) cell_w = std::max(cell_w, col.design.size() + 2);

  // Which code each column is: the merged layer or the posting it reproduces.
  std::string out;
  for (const auto& col : cols) {
    const DesignInfo* d = find_design(col.design);
    out += fmt::format("{:<22} {}\n", col.design, d ? d->posting : "(unregistered)");
  }
  out += "\n" + fmt::format("{:<{}}", "", label_w);
  for (const auto& col : cols) out += fmt::format("{:>{}}", col.design, cell_w);
  out += "\n";
  for (const auto& sec : sections) {
    if (sec.order.empty()) continue;
    out += sec.title + "\n";
    for (const auto& l : sec.order) {
      std::string label = "  " + l;
      if (label.size() > label_w - 1) {
        label.resize(label_w - 2);
        label.push_back('~');
      }
      out += fmt::format("{:<{}}", label, label_w);
      for (const auto& v : sec.cells.at(l)) out += fmt::format("{:>{}}", v, cell_w);
      out += "\n";
    }
  }
  for (const auto& col : cols)
    if (!col.refused.empty()) out += fmt::format("{} refused: {}\n", col.design, col.refused);
  return out;
}

}  // namespace mirrormmu
