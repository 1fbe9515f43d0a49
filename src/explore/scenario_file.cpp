// SPDX-License-Identifier: MIT
// Scenario files, read strictly: a scenario someone wrote by hand must fail
// with a line that names what is wrong, before any VM exists, never with a
// library's message, an allocation the host cannot make or a search that
// never ends.
#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>

#include "base/printable.h"
#include "explore/scenario.h"

namespace mirrormmu::explore {

namespace {

using nlohmann::json;

struct Bad : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr uint64_t kMaxFileBytes = 1 << 20;
constexpr uint64_t kMaxPoolPages = 1ull << 22;  // 16 GiB of frames
constexpr size_t kMaxSlots = 64;
constexpr size_t kMaxOpsPerThread = 4096;
// The explorer races small operations: every page costs scheduling steps,
// and an execution stops at 2,000,000 of them (reported as a livelock).
constexpr uint64_t kMaxOpPages = 16384;
constexpr uint64_t kMaxTotalPages = 65536;

std::string shown(const json& v) {
  std::string s = v.dump();
  return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

void only_keys(const json& obj, const std::string& where, std::initializer_list<const char*> keys) {
  if (!obj.is_object()) throw Bad(fmt::format("{}: expected an object, got {}", where, shown(obj)));
  for (const auto& [k, v] : obj.items()) {
    bool known = false;
    for (const char* allowed : keys) known |= k == allowed;
    if (!known) {
      std::string list;
      for (const char* allowed : keys) list += (list.empty() ? "" : ", ") + std::string(allowed);
      throw Bad(fmt::format("{}: unknown key '{}' (known: {})", where, printable(k, 40), list));
    }
  }
}

// A whole number: a JSON integer, or a string in decimal or 0x-hex with
// nothing after it. No sign, no fraction, no wrap.
uint64_t number(const json& obj, const std::string& where, const char* key, uint64_t def, uint64_t lo, uint64_t hi) {
  if (!obj.contains(key)) return def;
  const json& v = obj.at(key);
  const std::string name = where.empty() ? std::string(key) : where + "." + key;
  uint64_t n = 0;
  if (v.is_number_unsigned()) {
    n = v.get<uint64_t>();
  } else if (v.is_string()) {
    const std::string s = v.get<std::string>();
    const bool hex = s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
    const size_t start = hex ? 2 : 0;
    if (s.size() == start) throw Bad(fmt::format("'{}': {} is not a number", name, shown(v)));
    for (size_t i = start; i < s.size(); i++) {
      const char c = s[i];
      const bool digit = (c >= '0' && c <= '9') || (hex && ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'));
      if (!digit) throw Bad(fmt::format("'{}': {} is not a {} number", name, shown(v), hex ? "hex" : "decimal"));
    }
    errno = 0;
    n = std::strtoull(s.c_str() + start, nullptr, hex ? 16 : 10);
    if (errno == ERANGE) throw Bad(fmt::format("'{}': {} does not fit in 64 bits", name, shown(v)));
  } else {
    throw Bad(fmt::format("'{}': {} is not a whole number >= 0", name, shown(v)));
  }
  if (n < lo || n > hi) throw Bad(fmt::format("'{}': {} is out of range [{:#x}, {:#x}]", name, shown(v), lo, hi));
  return n;
}

bool flag(const json& obj, const std::string& where, const char* key, bool def) {
  if (!obj.contains(key)) return def;
  const json& v = obj.at(key);
  if (!v.is_boolean())
    throw Bad(fmt::format("'{}': {} is not true or false", where.empty() ? std::string(key) : where + "." + key, shown(v)));
  return v.get<bool>();
}

std::string text(const json& obj, const std::string& where, const char* key, const std::string& def, size_t max) {
  if (!obj.contains(key)) return def;
  const json& v = obj.at(key);
  const std::string name = where.empty() ? std::string(key) : where + "." + key;
  if (!v.is_string()) throw Bad(fmt::format("'{}': {} is not a string", name, shown(v)));
  const std::string s = v.get<std::string>();
  if (s.size() > max) throw Bad(fmt::format("'{}': longer than {} characters", name, max));
  for (char c : s)
    if (static_cast<unsigned char>(c) < 0x20) throw Bad(fmt::format("'{}': control character in {}", name, shown(v)));
  return s;
}

const json& list(const json& obj, const char* key, size_t max) {
  static const json empty = json::array();
  if (!obj.contains(key)) return empty;
  const json& v = obj.at(key);
  if (!v.is_array()) throw Bad(fmt::format("'{}': {} is not a list", key, shown(v)));
  if (v.size() > max) throw Bad(fmt::format("'{}': {} entries, at most {}", key, v.size(), max));
  return v;
}

Op op_of(const json& j, const std::string& where, const Scenario& s) {
  only_keys(j, where,
            {"op", "vcpu", "gpa", "pages", "slot", "shared", "accept_2m", "write", "to_private", "on", "read_only"});
  if (!j.contains("op")) throw Bad(fmt::format("{}: no 'op'", where));
  const std::string name = text(j, where, "op", "", 32);
  const auto kind = op_kind_from_name(name);
  if (!kind) {
    std::string known;
    for (int i = 0; i <= static_cast<int>(kLastOpKind); i++)
      known += (known.empty() ? "" : ", ") + std::string(op_kind_name(static_cast<OpKind>(i)));
    throw Bad(fmt::format("'{}.op': unknown op '{}' (known: {})", where, name, known));
  }
  Op o;
  o.kind = *kind;
  o.vcpu = static_cast<int>(number(j, where, "vcpu", 0, 0, uint64_t(s.vcpus - 1)));
  // Bounded by the pool: an operation over more pages than the host has
  // could never be backed, and the search's bookkeeping follows its size.
  o.gpa = number(j, where, "gpa", 0, 0, (1ull << 52) - 1);
  o.npages = number(j, where, "pages", 1, 1, std::min(s.pool_pages, kMaxOpPages));
  o.slot = static_cast<int>(number(j, where, "slot", 0, 0, 32767));
  o.shared = flag(j, where, "shared", false);
  o.accept_2m = flag(j, where, "accept_2m", false);
  o.flag = flag(j, where, "write", false) || flag(j, where, "to_private", false) || flag(j, where, "on", false) ||
           flag(j, where, "read_only", false);
  if (o.gpa & (kPageSize - 1)) throw Bad(fmt::format("'{}.gpa': {:#x} is not 4K-aligned", where, o.gpa));
  if (o.gpa + (o.npages << kPageShift) > (1ull << 52))
    throw Bad(fmt::format("'{}': {:#x} + {} pages runs past the guest physical address space", where, o.gpa, o.npages));
  return o;
}

// Overlap, wrap, zero size, misalignment, a duplicate id: what KVM refuses
// with -EINVAL or -EEXIST, refused here as bad input.
void check_slots(const Scenario& s) {
  const uint64_t gpa_limit = 1ull << (s.ept_levels == 5 ? 51 : 47);
  std::set<int> ids;
  for (size_t i = 0; i < s.slots.size(); i++) {
    const SlotSpec& a = s.slots[i];
    const std::string where = fmt::format("slots[{}]", i);
    if (!ids.insert(a.id).second) throw Bad(fmt::format("'{}.id': {} is used twice", where, a.id));
    if (a.size == 0) throw Bad(fmt::format("'{}.size': 0, a memslot needs at least one page", where));
    if ((a.gpa | a.size) & (kPageSize - 1))
      throw Bad(fmt::format("'{}': gpa {:#x} size {:#x} are not both 4K-aligned", where, a.gpa, a.size));
    if (a.gpa + a.size < a.gpa || a.gpa + a.size > gpa_limit)
      throw Bad(fmt::format("'{}': [{:#x}, +{:#x}) runs past the private GPA space ({:#x})", where, a.gpa, a.size,
                            gpa_limit));
    if ((a.size >> kPageShift) > s.pool_pages)
      throw Bad(fmt::format("'{}.size': {:#x} is more than the host pool ({} pages, 'pool_pages')", where, a.size,
                            s.pool_pages));
    for (size_t k = 0; k < i; k++) {
      const SlotSpec& b = s.slots[k];
      if (a.gpa < b.gpa + b.size && b.gpa < a.gpa + a.size)
        throw Bad(fmt::format("'{}': [{:#x}, +{:#x}) overlaps slots[{}] [{:#x}, +{:#x})", where, a.gpa, a.size, k, b.gpa,
                              b.size));
    }
  }
}

}  // namespace

std::optional<Scenario> parse_scenario_text(const std::string& body, const std::string& origin, std::string* error) {
  try {
    json j;
    try {
      j = json::parse(body);
    } catch (const json::parse_error& e) {
      // "at line L, column C": the position, not the library's wording.
      const std::string what = e.what();
      const size_t at = what.find("at line");
      throw Bad("not JSON" + (at == std::string::npos ? std::string() : " (" + what.substr(at, what.find(':', at) - at) + ")"));
    }
    only_keys(j, "the scenario", {"name", "description", "vcpus", "ept_levels", "pool_pages", "slots", "private_pages",
                                  "huge_pages", "eager_page_split", "dynamic_pamt", "tdx_pool", "finalize_in_setup",
                                  "setup", "threads"});
    Scenario s;
    s.name = text(j, "", "name", origin, 64);
    s.description = text(j, "", "description", "", 400);
    s.vcpus = static_cast<int>(number(j, "", "vcpus", 2, 1, 16));
    s.ept_levels = static_cast<int>(number(j, "", "ept_levels", 4, 4, 5));
    s.pool_pages = number(j, "", "pool_pages", 4096, 1024, kMaxPoolPages);
    s.huge_pages = flag(j, "", "huge_pages", false);
    s.eager_page_split = flag(j, "", "eager_page_split", true);
    s.dynamic_pamt = flag(j, "", "dynamic_pamt", false);
    s.tdx_pool = flag(j, "", "tdx_pool", false);
    s.finalize_in_setup = flag(j, "", "finalize_in_setup", true);
    if (!j.contains("slots")) throw Bad("no 'slots': a scenario needs at least one memslot");
    const json& slots = list(j, "slots", kMaxSlots);
    for (size_t i = 0; i < slots.size(); i++) {
      const std::string where = fmt::format("slots[{}]", i);
      only_keys(slots[i], where, {"id", "gpa", "size", "guest_memfd"});
      s.slots.push_back({static_cast<int>(number(slots[i], where, "id", 0, 0, 32767)),
                         number(slots[i], where, "gpa", 0, 0, ~0ull), number(slots[i], where, "size", 0, 0, ~0ull),
                         flag(slots[i], where, "guest_memfd", false) ? kMemGuestMemfd : 0u});
    }
    if (s.slots.empty()) throw Bad("'slots': a scenario needs at least one memslot");
    check_slots(s);
    s.private_pages = number(j, "", "private_pages", 0, 0, s.slots.front().size >> kPageShift);
    if (s.private_pages && !(s.slots.front().flags & kMemGuestMemfd))
      throw Bad("'private_pages': the first slot has no guest_memfd to make private");
    const json& setup = list(j, "setup", kMaxOpsPerThread);
    for (size_t i = 0; i < setup.size(); i++) s.setup.push_back(op_of(setup[i], fmt::format("setup[{}]", i), s));
    if (!j.contains("threads")) throw Bad("no 'threads': a scenario races 1 to 8 threads");
    const json& threads = list(j, "threads", 8);
    if (threads.empty()) throw Bad("'threads': a scenario races 1 to 8 threads");
    std::set<std::string> names;
    for (size_t t = 0; t < threads.size(); t++) {
      const std::string where = fmt::format("threads[{}]", t);
      only_keys(threads[t], where, {"name", "ops"});
      ThreadSpec th{text(threads[t], where, "name", fmt::format("thread{}", t), 32), {}};
      if (th.name.empty()) throw Bad(fmt::format("'{}.name': empty", where));
      if (!names.insert(th.name).second) throw Bad(fmt::format("'{}.name': '{}' is used twice", where, th.name));
      if (!threads[t].contains("ops")) throw Bad(fmt::format("{}: no 'ops'", where));
      const json& ops = threads[t].at("ops");
      if (!ops.is_array() || ops.empty() || ops.size() > kMaxOpsPerThread)
        throw Bad(fmt::format("'{}.ops': a list of 1 to {} operations", where, kMaxOpsPerThread));
      for (size_t i = 0; i < ops.size(); i++) th.ops.push_back(op_of(ops[i], fmt::format("{}.ops[{}]", where, i), s));
      s.threads.push_back(std::move(th));
    }
    uint64_t total = 0;
    for (const Op& o : s.setup) total += o.npages;
    for (const ThreadSpec& t : s.threads)
      for (const Op& o : t.ops) total += o.npages;
    if (total > kMaxTotalPages)
      throw Bad(fmt::format("{} pages over all operations, at most {}: an execution would outrun the explorer's step "
                            "limit", total, kMaxTotalPages));
    return s;
  } catch (const std::exception& e) {
    *error = "scenario file '" + origin + "': " + e.what();
    return std::nullopt;
  }
}

std::optional<Scenario> load_scenario_file(const std::string& path, std::string* error) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    *error = "no built-in scenario or readable file named '" + path + "'";
    return std::nullopt;
  }
  // A FIFO would block the open, a device or /proc file never end.
  if (!S_ISREG(st.st_mode)) {
    *error = "scenario file '" + path + "': not a regular file";
    return std::nullopt;
  }
  if (uint64_t(st.st_size) > kMaxFileBytes) {
    *error = fmt::format("scenario file '{}': {} bytes, at most {}", path, st.st_size, kMaxFileBytes);
    return std::nullopt;
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    *error = fmt::format("scenario file '{}': cannot read it: {}", path, std::strerror(errno));
    return std::nullopt;
  }
  std::ostringstream body;
  body << f.rdbuf();
  return parse_scenario_text(body.str(), path, error);
}

}  // namespace mirrormmu::explore
