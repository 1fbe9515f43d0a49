// SPDX-License-Identifier: MIT
#include "explore/scenario.h"

#include <fmt/format.h>

#include <cerrno>
#include <fstream>
#include <nlohmann/json.hpp>

namespace mirrormmu::explore {

namespace {

constexpr uint64_t kRam = 1ull << 32;
constexpr uint64_t k4K = kPageSize;

Op access(int vcpu, uint64_t gpa, uint64_t n, bool write, bool shared = false) {
  Op o;
  o.kind = OpKind::Access;
  o.vcpu = vcpu;
  o.gpa = gpa;
  o.npages = n;
  o.flag = write;
  o.shared = shared;
  return o;
}
Op convert(uint64_t gpa, uint64_t n, bool to_private) {
  Op o;
  o.kind = OpKind::Convert;
  o.gpa = gpa;
  o.npages = n;
  o.flag = to_private;
  return o;
}
Op simple(OpKind k, int vcpu = 0, int slot = 0) {
  Op o;
  o.kind = k;
  o.vcpu = vcpu;
  o.slot = slot;
  return o;
}

Scenario base(const char* name, const char* desc, uint64_t private_pages) {
  Scenario s;
  s.name = name;
  s.description = desc;
  s.slots = {{0, kRam, 2ull << 20, kMemGuestMemfd}};
  s.private_pages = private_pages;
  return s;
}

Scenario fault_fault_2m(int k) {
  Scenario s = base("fault-fault-2m", "two vCPUs fault the same pages of one 2M range of the mirror", 512);
  // Both link the same S-EPT tables and race to AUG the same gfns, in
  // opposite orders.
  for (int i = 0; i < k; i++) {
    if (s.threads.empty()) s.threads = {{"vcpu0", {}}, {"vcpu1", {}}};
    s.threads[0].ops.push_back(access(0, kRam + uint64_t(i) * k4K, 1, true));
    s.threads[1].ops.push_back(access(1, kRam + uint64_t(k - 1 - i) * k4K, 1, true));
  }
  return s;
}

Scenario fault_vs_convert(int k) {
  Scenario s = base("fault-vs-convert", "a vCPU faults private pages while the VMM converts them to shared", 512);
  s.setup = {access(1, kRam + 256 * k4K, 1, true)};  // tables exist: the race is on the leaves
  s.threads = {{"vcpu0", {access(0, kRam, uint64_t(k), true)}},
               {"vmm", {convert(kRam, uint64_t(k), false)}}};
  return s;
}

Scenario fault_vs_delete(int k) {
  Scenario s = base("fault-vs-delete", "vCPUs fault private and shared pages while the VMM deletes the memslot", 256);
  s.setup = {convert(kRam + 256 * k4K, 256, false)};
  s.threads = {{"vcpu0", {access(0, kRam, uint64_t(k), true)}},
               {"vcpu1", {access(1, kRam + 256 * k4K, uint64_t(k), true, true)}},
               {"vmm", {simple(OpKind::DeleteMemslot, 0, 0)}}};
  return s;
}

Scenario fault_vs_teardown(int k) {
  Scenario s = base("fault-vs-teardown",
                    "a vCPU faults while the VMM releases guest_memfd and deletes the memslot, then the TD is "
                    "destroyed",
                    512);
  s.setup = {access(1, kRam + 300 * k4K, 2, true)};
  Op punch;
  punch.kind = OpKind::Punch;
  punch.gpa = kRam;
  punch.npages = 512;
  s.threads = {{"vcpu0", {access(0, kRam, uint64_t(k), true)}},
               {"vmm", {punch, simple(OpKind::DeleteMemslot, 0, 0)}}};
  return s;
}

// Arms vCPU0's zero-step filter with `gpa` logged: six EPT violations at
// one RIP only count, the seventh logs its GPA.
Op zero_step(uint64_t gpa) {
  Op o = simple(OpKind::ZeroStep, 0);
  o.gpa = gpa;
  return o;
}

Scenario zero_step_vs_aug(int k) {
  Scenario s = base("zero-step-vs-aug",
                    "vCPU0 enters with zero-step mitigation armed (S-EPT tree locked exclusively) while vCPU1's "
                    "fault AUGs",
                    512);
  s.setup = {access(0, kRam, 1, true), zero_step(kRam)};
  s.threads = {{"vcpu0", {access(0, kRam, 1, false)}},
               {"vcpu1", {access(1, kRam + 64 * k4K, uint64_t(k), true)}}};
  return s;
}

Scenario zero_step_vs_remove(int k) {
  Scenario s = base("zero-step-vs-remove",
                    "vCPU0 enters with zero-step mitigation armed while the VMM removes private pages "
                    "(BLOCK/TRACK/REMOVE under the exclusive lock)",
                    512);
  s.setup = {access(1, kRam + 8 * k4K, uint64_t(k), true), access(0, kRam, 1, true), zero_step(kRam)};
  s.threads = {{"vcpu0", {access(0, kRam, 1, false)}},
               {"vmm", {convert(kRam + 8 * k4K, uint64_t(k), false)}}};
  return s;
}

// Building the TD: the initial image is added page by page (PAGE.ADD, then
// MR.EXTEND) while the VMM finalizes from another thread. KVM serializes the
// two with kvm->lock, every vcpu->mutex and slots_lock ("Guard VM state
// transitions with "all" the locks", after Yan Zhao's report); a finalize
// between an ADD and its EXTEND, or an image page mapped with AUG after it,
// is the race that guard closes.
Scenario add_vs_finalize(int k) {
  Scenario s = base("add-vs-finalize", "KVM_TDX_INIT_MEM_REGION adds the initial image while the VMM finalizes", 0);
  s.finalize_in_setup = false;
  Op add;
  add.kind = OpKind::InitMemRegion;
  add.gpa = kRam;
  add.npages = uint64_t(k) + 1;
  s.threads = {{"vmm0", {add}}, {"vmm1", {simple(OpKind::Finalize)}}};
  return s;
}

}  // namespace

const char* op_kind_name(OpKind k) {
  switch (k) {
    case OpKind::Access: return "access";
    case OpKind::Convert: return "convert";
    case OpKind::Punch: return "punch";
    case OpKind::DeleteMemslot: return "delete_memslot";
    case OpKind::DirtyLog: return "dirty_log";
    case OpKind::GetDirtyLog: return "get_dirty_log";
    case OpKind::ZeroStep: return "zero_step";
    case OpKind::Fault: return "fault";
    case OpKind::InitMemRegion: return "init_mem_region";
    case OpKind::Finalize: return "finalize";
    case OpKind::FastZap: return "fast_zap";
    case OpKind::Mprotect: return "mprotect";
    case OpKind::PreFault: return "pre_fault";
  }
  return "?";
}

std::optional<OpKind> op_kind_from_name(const std::string& s) {
  for (int i = 0; i <= static_cast<int>(kLastOpKind); i++)
    if (s == op_kind_name(static_cast<OpKind>(i))) return static_cast<OpKind>(i);
  return std::nullopt;
}

std::string Op::describe() const {
  switch (kind) {
    case OpKind::Access:
      return fmt::format("vcpu{} {} {} {:#x}+{}p{}", vcpu, flag ? "writes" : "reads", shared ? "shared" : "private",
                         gpa, npages, accept_2m ? " accepting 2M" : "");
    case OpKind::Convert:
      return fmt::format("convert {:#x}+{}p to {}", gpa, npages, flag ? "private" : "shared");
    case OpKind::Punch: return fmt::format("punch hole {:#x}+{}p", gpa, npages);
    case OpKind::DeleteMemslot: return fmt::format("delete memslot {}", slot);
    case OpKind::DirtyLog: return fmt::format("dirty logging {} on memslot {}", flag ? "on" : "off", slot);
    case OpKind::GetDirtyLog: return fmt::format("get dirty log of memslot {}", slot);
    case OpKind::ZeroStep: return fmt::format("arm zero-step on vcpu{}", vcpu);
    case OpKind::Fault: return fmt::format("EPT violation on vcpu{} at {:#x}", vcpu, gpa);
    case OpKind::InitMemRegion: return fmt::format("KVM_TDX_INIT_MEM_REGION {:#x}+{}p", gpa, npages);
    case OpKind::Finalize: return "KVM_TDX_FINALIZE_VM";
    case OpKind::FastZap: return "kvm_mmu_zap_all_fast()";
    case OpKind::Mprotect: return fmt::format("mprotect memslot {}'s memory {}", slot, flag ? "read-only" : "read-write");
    case OpKind::PreFault: return fmt::format("KVM_PRE_FAULT_MEMORY on vcpu{} {:#x}+{}p", vcpu, gpa, npages);
  }
  return "?";
}

int run_op(Vm& vm, const Op& op) {
  switch (op.kind) {
    case OpKind::Access: {
      const uint64_t alias = op.shared ? vm.shared_gpa_bit() : 0;
      for (uint64_t i = 0; i < op.npages; i++) {
        const ExitReason r = vm.vcpu_access(op.vcpu, (op.gpa + i * kPageSize) | alias, op.flag,
                                            op.accept_2m ? PgLevel::k2M : PgLevel::k4K);
        // A racing conversion or deletion legitimately sends the vCPU to
        // userspace; only a dead VM stops the thread.
        if (r == ExitReason::VmDead) return -EIO;
      }
      return 0;
    }
    case OpKind::Convert: return vm.set_memory_attributes(op.gpa, op.npages * kPageSize, op.flag);
    case OpKind::Punch: return vm.punch_hole(op.gpa, op.npages * kPageSize);
    case OpKind::DeleteMemslot: return vm.delete_memslot(op.slot);
    case OpKind::DirtyLog: return vm.set_dirty_logging(op.slot, op.flag);
    case OpKind::GetDirtyLog: return vm.get_dirty_log(op.slot) ? 0 : -EINVAL;
    case OpKind::Fault:
      return vm.vcpu_fault(op.vcpu, op.gpa, op.flag) == ExitReason::VmDead ? -EIO : 0;
    case OpKind::InitMemRegion: return vm.init_mem_region(op.gpa, op.npages);
    case OpKind::Finalize: return vm.finalize();
    case OpKind::FastZap:
      vm.zap_all_fast();
      return 0;
    case OpKind::Mprotect:
      for (const auto& m : vm.memslots())
        if (m->id == op.slot)
          return vm.host_protect(m->shared, 0, m->npages << kPageShift, op.flag ? HostProt::ReadOnly : HostProt::ReadWrite);
      return -EINVAL;
    case OpKind::PreFault: {
      // A racing deletion or conversion may stop it (-EAGAIN, -ENOENT...):
      // an outcome of the race, not an error of the scenario.
      uint64_t gpa = op.gpa, size = op.npages * kPageSize;
      int r;
      do r = vm.pre_fault_memory(op.vcpu, &gpa, &size);
      while (r == 0 && size);
      return r == -EIO ? r : 0;
    }
    case OpKind::ZeroStep:
      if (!vm.module()) return -EINVAL;
      // One instruction the guest is stuck at, outside the numbering of the
      // accesses that follow.
      while (!vm.module()->zero_step_active(op.vcpu)) vm.module()->vcpu_ept_violation(op.vcpu, op.gpa, ~0ull);
      return 0;
  }
  return -EINVAL;
}

// Private huge pages: a 2M private mapping, still PENDING (the setup only
// faults it in), that one vCPU accepts at 4K (the exclusive split: BLOCK,
// TRACK + kick, DEMOTE) while the other accepts at 2M and the VMM converts
// a range that cuts it.
Scenario accept_4k_vs_2m(int k) {
  Scenario s = base("accept-4k-vs-2m",
                    "vCPU0 accepts 4K pages inside a PENDING 2M mapping (demotion) while vCPU1 accepts 2M "
                    "and the VMM converts a range that cuts it",
                    512);
  s.huge_pages = true;
  Op fault = simple(OpKind::Fault, 1);
  fault.gpa = kRam;
  fault.flag = true;
  s.setup = {fault};
  Op accept2m = access(1, kRam + 300 * k4K, uint64_t(k), true);
  accept2m.accept_2m = true;
  s.threads = {{"vcpu0", {access(0, kRam + 5 * k4K, uint64_t(k), true)}},
               {"vcpu1", {accept2m}},
               {"vmm", {convert(kRam + 100 * k4K, uint64_t(k), false)}}};
  return s;
}

// Two 2M private mappings, both accepted at 2M, then the VMM punches a hole
// that cuts both (head and tail split) while a vCPU keeps touching them.
Scenario punch_cuts_2m(int k) {
  Scenario s = base("punch-cuts-2m",
                    "the VMM punches a hole across the boundary of two accepted 2M private mappings while a "
                    "vCPU touches both",
                    1024);
  s.slots = {{0, kRam, 4ull << 20, kMemGuestMemfd}};
  s.pool_pages = 8192;
  s.huge_pages = true;
  Op a = access(0, kRam, 1, true), b = access(0, kRam + 512 * k4K, 1, true);
  a.accept_2m = b.accept_2m = true;
  s.setup = {a, b};
  Op hole = simple(OpKind::Punch);
  hole.gpa = kRam + 500 * k4K;
  hole.npages = 24;
  s.threads = {{"vcpu0", {access(0, kRam + 490 * k4K, uint64_t(k) + 1, true), access(0, kRam + 530 * k4K, uint64_t(k), true)}},
               {"vmm", {hole}}};
  return s;
}

// Shared memory of the direct root, backed by a 2M page: slot 1.
constexpr uint64_t kBuf = 1ull << 30;
Scenario with_shared_slot(Scenario s) {
  s.slots.push_back({1, kBuf, 2ull << 20, 0});
  return s;
}
Op dirty_log(bool on) {
  Op o = simple(OpKind::DirtyLog, 0, 1);
  o.flag = on;
  return o;
}

// Dirty logging starts on a slot mapped by one 2M leaf: the eager split runs
// under the shared lock and write-protection follows, while two vCPUs write.
Scenario dirty_log_vs_write(int k) {
  Scenario s = with_shared_slot(base("dirty-log-vs-write",
                                     "the VMM enables dirty logging (eager split, write-protect, flush) and "
                                     "harvests while two vCPUs write the 2M-mapped shared slot",
                                     0));
  s.setup = {access(0, kBuf, 1, false, true)};
  s.threads = {{"vcpu0", {access(0, kBuf + 3 * k4K, uint64_t(k), true, true)}},
               {"vcpu1", {access(1, kBuf + 300 * k4K, uint64_t(k), true, true)}},
               {"vmm", {dirty_log(true), simple(OpKind::GetDirtyLog, 0, 1)}}};
  return s;
}

// Without eager splitting the 2M leaf is only write-protected; the first
// write to each 4K page splits it on the fault path, under the shared lock,
// and two vCPUs race to do it.
Scenario split_on_write_fault(int k) {
  Scenario s = with_shared_slot(base("split-on-write-fault",
                                     "two vCPUs write a write-protected 2M leaf of the direct root while dirty "
                                     "logging is on, so each write fault splits it under the shared lock",
                                     0));
  s.eager_page_split = false;
  s.setup = {access(0, kBuf, 1, false, true), dirty_log(true)};
  s.threads = {{"vcpu0", {access(0, kBuf + 5 * k4K, uint64_t(k), true, true)}},
               {"vcpu1", {access(1, kBuf + 400 * k4K, uint64_t(k), true, true)}},
               {"vmm", {simple(OpKind::GetDirtyLog, 0, 1)}}};
  return s;
}

// Conversions both ways: private pages go shared and come back while one
// vCPU uses them as private and the other through the shared alias.
Scenario convert_both_ways(int k) {
  Scenario s = base("convert-both-ways",
                    "the VMM converts pages private->shared->private while one vCPU faults them private and "
                    "another shared",
                    512);
  s.setup = {access(1, kRam + 256 * k4K, 1, true)};
  s.threads = {{"vcpu0", {access(0, kRam, uint64_t(k), true)}},
               {"vcpu1", {access(1, kRam, uint64_t(k), true, true)}},
               {"vmm", {convert(kRam, uint64_t(k), false), convert(kRam, uint64_t(k), true)}}};
  return s;
}

// Dynamic PAMT: two vCPUs fault 4K private pages of one 2M region (the
// region's PAMT pair refcount 0 -> 1 -> ...) while the VMM converts some
// back (1 -> 0 frees the pair).
Scenario dpamt_fault_vs_convert(int k) {
  Scenario s = base("dpamt-fault-vs-convert",
                    "with Dynamic PAMT, two vCPUs fault private pages of one 2M region while the VMM converts "
                    "some of them (PAMT pair refcounts up and down)",
                    512);
  s.dynamic_pamt = true;
  s.threads = {{"vcpu0", {access(0, kRam, uint64_t(k), true)}},
               {"vcpu1", {access(1, kRam + 8 * k4K, uint64_t(k), true)}},
               {"vmm", {convert(kRam, uint64_t(k), false)}}};
  return s;
}

// A fast zap during the TD's life: the direct root goes (and is rebuilt by
// the shared fault racing it), the mirror and the private faults must not
// notice.
Scenario fault_vs_fast_zap(int k) {
  Scenario s = with_shared_slot(base("fault-vs-fast-zap",
                                     "vCPUs fault private and shared pages while the VMM runs kvm_mmu_zap_all_fast(), "
                                     "which must leave the mirror root alone",
                                     64));
  s.setup = {access(1, kBuf, 1, false, true)};
  s.threads = {{"vcpu0", {access(0, kRam, uint64_t(k), true)}},
               {"vcpu1", {access(1, kBuf + 3 * k4K, uint64_t(k), true, true)}},
               {"vmm", {simple(OpKind::FastZap, 0, 0)}}};
  return s;
}

// mmu_stress_test's race in small: a vCPU writes shared pages (looking up a
// writable pfn, then mapping it under mmu_lock) while the host mprotects the
// memory read-only. The MMU notifier's invalidation must make any fault that
// looked up the page before it retry.
Scenario write_vs_mprotect(int k) {
  Scenario s = with_shared_slot(base("write-vs-mprotect",
                                     "a vCPU writes shared pages while the host mprotects their memory read-only "
                                     "(the MMU notifier unmaps them; a fault that raced it must retry)",
                                     0));
  Op ro = simple(OpKind::Mprotect, 0, 1);
  ro.flag = true;
  s.threads = {{"vcpu0", {access(0, kBuf, uint64_t(k), true, true)}}, {"vmm", {ro}}};
  return s;
}

// pre_fault_memory_test's race: KVM_PRE_FAULT_MEMORY of private pages while
// the VMM deletes their memslot; the prefault must give up (-EAGAIN) rather
// than hold SRCU against the deletion, and leave nothing mapped behind it.
Scenario prefault_vs_delete(int k) {
  Scenario s = base("prefault-vs-delete",
                    "KVM_PRE_FAULT_MEMORY of private pages while the VMM deletes their memslot", 64);
  Op pf = simple(OpKind::PreFault, 0, 0);
  pf.gpa = kRam;
  pf.npages = uint64_t(k) + 1;
  s.threads = {{"vcpu0", {pf}}, {"vmm", {simple(OpKind::DeleteMemslot, 0, 0)}}};
  return s;
}

const std::vector<ScenarioInfo>& builtin_scenarios() {
  static const std::vector<ScenarioInfo> all = {
      {"fault-fault-2m", "two vCPUs fault the same pages of one 2M range of the mirror", &fault_fault_2m},
      {"fault-vs-convert", "a vCPU faults private pages while the VMM converts them to shared", &fault_vs_convert},
      {"fault-vs-delete", "vCPUs fault private and shared pages while the VMM deletes the memslot", &fault_vs_delete},
      {"fault-vs-teardown", "a vCPU faults while the VMM releases guest_memfd and deletes the memslot",
       &fault_vs_teardown},
      {"zero-step-vs-aug", "vCPU entry with zero-step mitigation against another vCPU's AUG", &zero_step_vs_aug},
      {"zero-step-vs-remove", "vCPU entry with zero-step mitigation against removal under the exclusive lock",
       &zero_step_vs_remove},
      {"accept-4k-vs-2m", "a 4K accept demotes a PENDING 2M mapping while another vCPU accepts 2M and the VMM converts",
       &accept_4k_vs_2m},
      {"punch-cuts-2m", "a hole punched across two 2M private mappings (head and tail split) while a vCPU touches them",
       &punch_cuts_2m},
      {"dirty-log-vs-write", "dirty logging starts (eager split, write-protect) and is harvested while vCPUs write",
       &dirty_log_vs_write},
      {"split-on-write-fault", "write faults split a write-protected 2M leaf of the direct root, racing",
       &split_on_write_fault},
      {"convert-both-ways", "private->shared->private conversions against private and shared faults",
       &convert_both_ways},
      {"dpamt-fault-vs-convert", "Dynamic PAMT: faults and conversions in one 2M region", &dpamt_fault_vs_convert},
      {"add-vs-finalize", "KVM_TDX_INIT_MEM_REGION adds the initial image while the VMM finalizes", &add_vs_finalize},
      {"fault-vs-fast-zap", "private and shared faults against kvm_mmu_zap_all_fast() on a TD", &fault_vs_fast_zap},
      {"write-vs-mprotect", "shared write faults against the host's mprotect to read-only (the MMU notifier)",
       &write_vs_mprotect},
      {"prefault-vs-delete", "KVM_PRE_FAULT_MEMORY of private pages against the memslot's deletion",
       &prefault_vs_delete},
  };
  return all;
}

std::optional<Scenario> load_scenario(const std::string& name_or_file, int scale, std::string* error) {
  for (const auto& b : builtin_scenarios())
    if (b.name == name_or_file) return b.make(scale);
  return load_scenario_file(name_or_file, error);
}

}  // namespace mirrormmu::explore
