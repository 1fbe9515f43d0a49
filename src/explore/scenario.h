// SPDX-License-Identifier: MIT
// Scenarios for the explorer: a small TD, a setup run on one thread, and a
// few threads (vCPUs and the VMM) whose operations race. Built in, or read
// from a JSON file (see scenarios/ for the format).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vm/vm.h"

namespace mirrormmu::explore {

enum class OpKind : uint8_t {
  Access,          // vcpu touches npages pages from gpa (private, or shared alias)
  Convert,         // set_memory_attributes(gpa, npages, to_private = flag)
  Punch,           // guest_memfd punch hole
  DeleteMemslot,   // slot
  DirtyLog,        // set_dirty_logging(slot, flag)
  GetDirtyLog,     // slot
  ZeroStep,        // arm zero-step mitigation on vcpu (6 private EPT violations)
  Fault,           // an EPT violation on gpa handled by KVM, no guest accept (AUG leaves it PENDING)
  InitMemRegion,   // KVM_TDX_INIT_MEM_REGION: npages from gpa added with TDH.MEM.PAGE.ADD and measured
  Finalize,        // KVM_TDX_FINALIZE_VM
  FastZap,         // kvm_mmu_zap_all_fast(): direct roots invalidated, vCPUs reload
  Mprotect,        // the host mprotect()s slot's userspace memory read-only (flag) or read-write
  PreFault,        // KVM_PRE_FAULT_MEMORY on vcpu for npages from gpa (until done or an error)
};
inline constexpr OpKind kLastOpKind = OpKind::PreFault;
const char* op_kind_name(OpKind k);
std::optional<OpKind> op_kind_from_name(const std::string& s);

struct Op {
  OpKind kind = OpKind::Access;
  int vcpu = 0;
  uint64_t gpa = 0;
  uint64_t npages = 1;
  bool flag = false;   // Access: write; Convert: to private; DirtyLog: on; Mprotect: read-only
  bool shared = false; // Access: through the shared alias
  bool accept_2m = false;  // Access: the guest accepts 2M at a time
  int slot = 0;
  std::string describe() const;
};

struct SlotSpec {
  int id;
  uint64_t gpa;
  uint64_t size;
  uint32_t flags;
};

struct ThreadSpec {
  std::string name;
  std::vector<Op> ops;
};

struct Scenario {
  std::string name;
  std::string description;
  int vcpus = 2;
  int ept_levels = 4;
  uint64_t pool_pages = 4096;
  std::vector<SlotSpec> slots;
  uint64_t private_pages = 0;  // pages from the first slot made private before finalize
  bool huge_pages = false;     // 2M private mappings (needs a design that can split them)
  bool eager_page_split = true;  // split the direct root's huge pages when dirty logging starts
  bool dynamic_pamt = false;
  bool tdx_pool = false;       // sp->external_spt from TDX's own pool (--external-spt tdx-pool)
  // KVM_TDX_FINALIZE_VM in the setup (before private_pages are made
  // private); off when a thread builds and finalizes the TD itself.
  bool finalize_in_setup = true;
  std::vector<Op> setup;       // run on one thread after finalize
  std::vector<ThreadSpec> threads;
};

// Runs one operation; 0, or a negative errno (expected outcomes of races,
// like a private access to memory just converted, are not errors).
int run_op(Vm& vm, const Op& op);

struct ScenarioInfo {
  std::string name;
  std::string description;
  Scenario (*make)(int scale);  // scale: operations per thread (>= 1)
};
const std::vector<ScenarioInfo>& builtin_scenarios();
// A built-in name, or a path to a JSON scenario file. Errors as a message.
std::optional<Scenario> load_scenario(const std::string& name_or_file, int scale, std::string* error);
// A JSON scenario file: a regular file of at most 1 MiB, every key known,
// every number in range, the memslot layout sane. Errors name the key and
// the value.
std::optional<Scenario> load_scenario_file(const std::string& path, std::string* error);
// The same for the file's text (`origin` names it in errors): what the
// fuzzer drives.
std::optional<Scenario> parse_scenario_text(const std::string& text, const std::string& origin, std::string* error);

}  // namespace mirrormmu::explore
