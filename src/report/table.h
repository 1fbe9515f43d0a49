// SPDX-License-Identifier: MIT
// The transition table of __handle_changed_spte(), computed per design: every
// (old kind, new kind, lock mode, root) row, how often the built-in scenarios
// (under the explorer, with and without injected failures) and small runs of
// the default workload (plain and with every injectable SEAMCALL status)
// reached it, what the design refused there, and which sites fired while the
// row was being handled. Rows nothing reaches are driven directly. Nothing is
// cached: every call computes the table anew.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/bug.h"
#include "check/transitions.h"

namespace mirrormmu::report {

// The kinds the table distinguishes. FROZEN_SPTE is non-present, exactly as
// __handle_changed_spte() sees it.
enum class RowKind : uint8_t { NonPresent, Mmio, Leaf, NonLeaf };
inline constexpr size_t kRowKinds = 4;
const char* row_kind_name(RowKind k);

struct RowKey {
  RowKind old_kind;
  RowKind new_kind;
  bool shared;
  bool mirror;
  std::string name() const;  // "leaf -> non-present, shared, mirror"
};
inline constexpr size_t kTableRows = kRowKinds * kRowKinds * 2 * 2;
size_t row_index(const RowKey& k);
RowKey row_key(size_t i);
// The table row a transition class falls into.
size_t row_of_class(size_t transition_class);

// Where something was seen, and how to see it again.
struct Evidence {
  std::string source;   // scenario or workload, e.g. "fault-vs-convert", "td-life+inject"
  std::string command;  // a `mirrormmu replay ...` or `mirrormmu run ...` line
  std::string injected; // the injected failure(s) in that execution, or empty
  bool empty() const { return command.empty(); }
};

struct SiteSeen {
  uint64_t hits = 0;
  uint64_t sources = 0;  // executions and runs in which it fired
  Evidence first;
};

// What driving a row directly (through the MMU's own setter, under the lock
// mode of the row, on a small TD) showed.
struct DriveResult {
  bool attempted = false;
  std::string outcome;  // "accepted", "refused -EIO", "cannot be set up: ..."
  std::vector<Site> sites;
  std::vector<std::string> violations;  // invariants broken afterwards
};

struct RowResult {
  uint64_t attempts = 0;
  std::map<std::string, uint64_t> by_source;  // attempts per scenario/workload
  Evidence reached;
  std::map<int, uint64_t> refused;  // -errno -> times
  Evidence refused_first;
  std::map<Site, SiteSeen> sites;
  DriveResult drive;
};

struct DesignTable {
  std::string design;
  uint64_t executions = 0;  // explorer executions
  uint64_t runs = 0;        // workload runs
  double seconds = 0;
  std::vector<std::string> skipped;  // scenarios or runs the design cannot do, with why
  std::vector<std::string> failures;  // executions or runs that broke an invariant (MMU tables)
  std::array<RowResult, kTableRows> rows;
  std::map<Site, SiteSeen> outside;  // sites hit while no change was handled
  std::map<Site, SiteSeen> rcu;      // sites hit in RCU callbacks
};

struct TableConfig {
  uint64_t executions_per_pass = 150;  // per scenario and pass
  int preemptions = 1;
  double gib = 0.02;
  bool drive = true;
  bool inject_runs = true;  // a run per injectable SEAMCALL status and allocation site
};

using TableProgress = std::function<void(const std::string& what)>;

// Computes the table of one design. nullopt (with *error) for a bad design.
std::optional<DesignTable> compute_table(const std::string& design, const TableConfig& cfg,
                                         const TableProgress& progress, std::string* error);

// The same table for a plain VM's direct root on an MMU of vm/direct_mmu.h
// ("model", "model-6.12", "kernel"): its races explored (plain:MMU:...) and
// shared-life runs, in turn and on vCPU threads, with and without 2M pages;
// the real code's rows come from its own tracepoint. Mirror rows stay
// unreached: a plain VM has none.
std::optional<DesignTable> compute_mmu_table(const std::string& mmu, const TableConfig& cfg,
                                             const TableProgress& progress, std::string* error);

enum class TableFormat : uint8_t { Text, Markdown, Json };
std::string format_tables(const std::vector<DesignTable>& tables, TableFormat f);
// Rows where two designs differ: reached or not, refusals, sites.
std::string format_table_diff(const DesignTable& a, const DesignTable& b, TableFormat f);

}  // namespace mirrormmu::report
