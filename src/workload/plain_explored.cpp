// SPDX-License-Identifier: MIT
#include "workload/plain_explored.h"

#include <fmt/format.h>

#include <cerrno>

#include <functional>
#include <memory>

#include "check/direct_checker.h"
#include "check/end_state.h"
#include "check/transitions.h"
#include "spte/spte.h"
#include "sync/det_engine.h"
#include "vm/direct_mmu.h"

namespace mirrormmu {

namespace {

constexpr const char* kPrefix = "plain:";
constexpr int kSlot = 0;
constexpr uint64_t kSlotPages = 4096;      // 16 MiB: eight 2M pages
constexpr uint64_t kPfnBase = 1ull << 24;
constexpr uint64_t kMigratedBase = 2ull << 24;  // where the host moves a page
constexpr int kRetPfRetry = 1, kRetPfFixed = 5, kRetPfSpurious = 6;

// What a scenario's threads share: the MMU, the layout the checker holds it
// to, and what the guest wrote (for the lost-dirty-page check).
struct Ctx {
  explicit Ctx(DirectMmu& m) : mmu(m) {}
  DirectMmu& mmu;
  DirectLayout layout;
  std::vector<uint64_t> written = std::vector<uint64_t>(kSlotPages / 64);
  std::vector<uint64_t> logged = std::vector<uint64_t>(kSlotPages / 64);
  std::string error;

  // A guest access on vCPU v: the TLB, else the CPU's walk, else an EPT
  // violation; after KVM handles it the guest runs the instruction again.
  void access(int v, uint64_t gfn, bool write, int host_level, bool fetch = false) {
    for (int i = 0; i < 64; i++) {
      if (mmu.guest_access(v, gfn, write, fetch) != HwAccess::EptViolation) {
        if (write) written[gfn / 64] |= 1ull << (gfn % 64);
        return;
      }
      const int r = fetch ? mmu.exec_fault(v, gfn, host_level) : mmu.fault(v, gfn, write, host_level);
      // The memslot is gone: KVM exits to userspace as for MMIO.
      if (r == -EFAULT) return;
      if (r != kRetPfFixed && r != kRetPfSpurious && r != kRetPfRetry) {
        if (error.empty()) error = fmt::format("fault_failed: vCPU {} gfn {:#x}: {}", v, gfn, r);
        return;
      }
      // Back into the guest to fault again: whatever made the fault retry
      // (an invalidation in progress) needs its thread to run.
      if (r == kRetPfRetry) sync::cond_resched_spin(&mmu);
    }
    if (error.empty()) error = fmt::format("fault_livelock: vCPU {} gfn {:#x}", v, gfn);
  }
  // An instruction fetch: an access that needs execute permission, whose
  // EPT violation KVM handles as a fetch.
  void exec(int v, uint64_t gfn, int host_level) { access(v, gfn, false, host_level, true); }
  // The NX recovery worker's pass, after which no vCPU may still use what
  // it zapped.
  void recover_nx(unsigned ratio, uint64_t start, uint64_t end) {
    const int r = mmu.recover_nx_huge_pages(ratio);
    if (r < 0) {
      ok("recover_nx_huge_pages", r);
      return;
    }
    translations_agree(start, end, "the NX huge page recovery");
  }
  void collect() {
    std::vector<uint64_t> bits;
    if (!ok("get_dirty_log", mmu.get_dirty_log(kSlot, bits))) return;
    for (size_t w = 0; w < bits.size() && w < logged.size(); w++) logged[w] |= bits[w];
    translations_agree(0, kSlotPages, "KVM_GET_DIRTY_LOG");
  }
  void dirty_log_on() {
    if (!ok("memslot_dirty_log", mmu.memslot_dirty_log(kSlot, true))) return;
    layout.slots[kSlot].dirty_log = true;
    translations_agree(0, kSlotPages, "KVM_SET_USER_MEMORY_REGION2 (dirty logging on)");
  }
  // Logging stops: the huge pages come back (zap_collapsible).
  void dirty_log_off() {
    if (!ok("memslot_dirty_log", mmu.memslot_dirty_log(kSlot, false))) return;
    layout.slots[kSlot].dirty_log = false;
  }
  void zap(uint64_t start, uint64_t end) {
    mmu.zap_leafs(start, end);
    translations_agree(start, end, "kvm_zap_gfn_range()");
  }
  // KVM_PRE_FAULT_MEMORY: done, or the slot is gone (-ENOENT) or going
  // (-EAGAIN, userspace may retry); anything else is a finding.
  void prefault(int v, uint64_t gfn, uint64_t npages) {
    const int r = mmu.pre_fault_memory(v, gfn, npages);
    if (r != 0 && r != -EAGAIN && r != -ENOENT && error.empty())
      error = fmt::format("prefault_failed: vCPU {} [{:#x}, {:#x}): {}", v, gfn, gfn + npages, r);
  }
  // The clear_young notifier: aging flushes nothing.
  void age(uint64_t start, uint64_t end) { mmu.age(start, end, false); }
  // The slot goes and userspace unmaps its memory: the host frees the pages.
  void delete_slot() {
    if (!ok("memslot_delete", mmu.memslot_delete(kSlot))) return;
    layout.slots.erase(kSlot);
    mmu.hw().host_freed(kPfnBase, kPfnBase + kSlotPages, "the deletion of memslot 0");
  }
  void translations_agree(uint64_t start, uint64_t end, const char* after) {
    std::string err = mmu.check_translations(start, end, after);
    if (!err.empty() && error.empty()) error = std::move(err);
  }
  // A VMM step that fails is a finding, not something to race past.
  bool ok(const char* what, int r) {
    if (r && error.empty()) error = fmt::format("vmm_failed: {}: {}", what, r);
    return r == 0;
  }
};

struct PlainScenario {
  PlainScenarioInfo info;
  bool dirty_log_at_start = false;
  std::function<void(Ctx&)> setup;                    // before the race, not explored
  std::vector<std::pair<std::string, std::function<void(Ctx&)>>> threads;
  bool check_dirty = false;                           // every write must reach a log
};

const std::vector<PlainScenario>& scenarios() {
  static const std::vector<PlainScenario> all = {
      {{"fault-fault", "two vCPUs fault the same 2M region, one at 4K, one at 2M"},
       false,
       [](Ctx&) {},
       {{"vcpu0", [](Ctx& c) { c.access(0, 0x10, true, 1); }},
        {"vcpu1", [](Ctx& c) { c.access(1, 0x11, true, 2); }}}},
      {{"fault-vs-zap", "a vCPU maps a 2M page while the VMM zaps the range (kvm_zap_gfn_range)"},
       false,
       [](Ctx& c) { c.access(0, 0x200, false, 1); },
       {{"vcpu0", [](Ctx& c) { c.access(0, 0x210, true, 2); }},
        {"vmm", [](Ctx& c) { c.zap(0x200, 0x400); }}}},
      {{"fault-vs-fast-zap", "two vCPUs fault while the VMM invalidates every root and zaps them shared"},
       false,
       [](Ctx& c) { c.access(0, 0x1, true, 1); },
       {{"vcpu0", [](Ctx& c) { c.access(0, 0x2, true, 1); }},
        {"vcpu1", [](Ctx& c) { c.access(1, 0x403, true, 1); }},
        {"vmm", [](Ctx& c) { c.mmu.zap_all_fast(); }}}},
      {{"write-vs-dirty-log", "a vCPU writes while the VMM enables dirty logging and collects the log"},
       false,
       [](Ctx& c) {
         c.access(0, 0x20, true, 1);
         c.access(0, 0x21, true, 1);
       },
       {{"vcpu0",
         [](Ctx& c) {
           c.access(0, 0x20, true, 1);
           c.access(0, 0x22, true, 1);
         }},
        {"vmm",
         [](Ctx& c) {
           c.dirty_log_on();
           c.written.assign(c.written.size(), 0);  // what counts starts now
           c.collect();
         }}},
       true},
      {{"write-vs-log-collect",
        "a vCPU keeps writing pages it has cached writable while the VMM collects the dirty log twice"},
       false,
       [](Ctx& c) {
         c.dirty_log_on();
         c.access(0, 0x30, true, 1);
         c.access(0, 0x31, true, 1);
       },
       {{"vcpu0",
         [](Ctx& c) {
           c.access(0, 0x30, true, 1);
           c.access(0, 0x31, true, 1);
           c.access(0, 0x30, true, 1);
         }},
        {"vmm",
         [](Ctx& c) {
           c.collect();
           c.collect();
         }}},
       true},
      {{"access-vs-zap", "a vCPU keeps using pages it has cached while the VMM zaps them and deletes the memslot"},
       false,
       [](Ctx& c) {
         c.access(0, 0x300, true, 1);
         c.access(1, 0x301, false, 1);
       },
       {{"vcpu0",
         [](Ctx& c) {
           c.access(0, 0x300, true, 1);
           c.access(0, 0x302, false, 1);
         }},
        {"vmm",
         [](Ctx& c) {
           c.zap(0x200, 0x400);
           c.delete_slot();
         }}}},
      {{"fast-pf-vs-zap",
        "a vCPU's write makes a write-protected leaf writable again without mmu_lock (fast_page_fault) while the "
        "VMM zaps it under the exclusive lock"},
       false,
       [](Ctx& c) {
         c.dirty_log_on();
         c.access(0, 0x70, true, 1);
         c.collect();  // write-protects 0x70, leaving it MMU-writable
       },
       {{"vcpu0", [](Ctx& c) { c.access(0, 0x70, true, 1); }},
        {"vmm", [](Ctx& c) { c.zap(0x70, 0x71); }}}},
      {{"walk-vs-age-zap",
        "the CPU sets Accessed in a leaf aging cleared, while the VMM zaps it under the exclusive lock"},
       false,
       [](Ctx& c) {
         c.access(0, 0x80, false, 1);
         c.access(1, 0x90, false, 1);  // vCPU 1 has a root, not 0x80 cached
         c.age(0x80, 0x81);
       },
       {{"vcpu1", [](Ctx& c) { c.access(1, 0x80, false, 1); }},
        {"vmm", [](Ctx& c) { c.zap(0x80, 0x81); }}}},
      {{"age-vs-zap",
        "the host ages pages without mmu_lock (clear_young) while the VMM zaps them under the exclusive lock and a "
        "vCPU writes one back"},
       false,
       [](Ctx& c) {
         c.access(0, 0x60, true, 1);
         c.access(0, 0x61, false, 1);
       },
       {{"host", [](Ctx& c) { c.age(0x60, 0x62); }},
        {"vmm", [](Ctx& c) { c.zap(0x60, 0x62); }},
        {"vcpu0", [](Ctx& c) { c.access(0, 0x61, true, 1); }}}},
      {{"exec-vs-nx-recover",
        "with NX huge pages on, vCPUs fetch from and read a 2M region an exec fault split while the recovery "
        "worker zaps the split table under the read lock"},
       false,
       [](Ctx& c) {
         c.ok("set_nx_huge_pages", c.mmu.set_nx_huge_pages(true));
         c.access(0, 0x200, false, 2);  // a huge leaf, not executable
         c.exec(0, 0x201, 2);           // split: 4K pages, executable
         c.access(1, 0x203, false, 2);  // vCPU 1 caches the split table
       },
       {{"vcpu0",
         [](Ctx& c) {
           c.exec(0, 0x202, 2);
           c.access(0, 0x204, false, 2);
         }},
        {"vcpu1", [](Ctx& c) { c.access(1, 0x203, true, 2); }},
        {"vmm", [](Ctx& c) { c.recover_nx(1, 0x200, 0x400); }}}},
      {{"fault-vs-recover",
        "vCPUs fault in a 2M region dirty logging left in 4K pages while the VMM stops logging and the huge page "
        "is recovered (zap_collapsible under the read lock)"},
       false,
       [](Ctx& c) {
         c.dirty_log_on();
         c.access(0, 0x400, true, 2);
         c.access(1, 0x401, false, 2);
       },
       {{"vcpu0",
         [](Ctx& c) {
           c.access(0, 0x402, true, 2);
           c.access(0, 0x400, false, 2);
         }},
        {"vmm", [](Ctx& c) { c.dirty_log_off(); }}}},
      {{"notifier-vs-fault",
        "the host migrates a page (MMU notifier start, remap, end, free) while a vCPU faults it in"},
       false,
       [](Ctx& c) { c.access(1, 0x51, false, 1); },
       {{"vcpu0", [](Ctx& c) { c.access(0, 0x50, true, 1); }},
        {"host", [](Ctx& c) { c.mmu.host_migrate(0x50, 1, kMigratedBase + 0x50); }}}},
      {{"prefault-vs-delete",
        "KVM_PRE_FAULT_MEMORY maps a range while the VMM deletes its memslot (the selftest's concurrent removal)"},
       false,
       [](Ctx& c) { c.access(0, 0x1, false, 1); },
       {{"vcpu0", [](Ctx& c) { c.prefault(0, 0x100, 8); }},
        {"vmm", [](Ctx& c) { c.delete_slot(); }}}},
      {{"access-vs-fast-zap",
        "vCPUs keep running on their roots while the VMM invalidates them (kvm_mmu_zap_all_fast) and deletes the "
        "memslot"},
       false,
       [](Ctx& c) {
         c.access(0, 0x40, true, 1);
         c.access(1, 0x441, true, 2);
       },
       {{"vcpu0",
         [](Ctx& c) {
           c.access(0, 0x40, false, 1);
           c.access(0, 0x41, true, 1);
         }},
        {"vcpu1", [](Ctx& c) { c.access(1, 0x441, true, 2); }},
        {"vmm",
         [](Ctx& c) {
           c.mmu.zap_all_fast();
           c.delete_slot();
         }}}},
      {{"split-vs-fault", "eager splitting (mmu_lock for read) races a vCPU faulting in the same 2M page"},
       false,
       [](Ctx& c) { c.access(0, 0x600, true, 2); },
       {{"vcpu0", [](Ctx& c) { c.access(0, 0x7ff, true, 1); }},
        {"vmm", [](Ctx& c) { c.ok("split_huge_pages", c.mmu.split_huge_pages(kSlot, 1, true)); }}}},
  };
  return all;
}

const PlainScenario* find(const std::string& name) {
  for (const auto& s : scenarios())
    if (s.info.name == name) return &s;
  return nullptr;
}

explore::ExecResult run_plain(const std::string& mmu_name, const PlainScenario& sc, sync::DetStrategy& strategy,
                              const explore::ExecConfig& ec) {
  explore::ExecResult r;
  std::unique_ptr<DirectMmu> mmu = find_direct_mmu(mmu_name)(2);
  Ctx c(*mmu);
  mmu->host().set_base(kPfnBase);
  auto fail = [&](std::string inv, std::string detail, std::string where) {
    if (!r.ok) return;
    r.ok = false;
    r.invariant = std::move(inv);
    r.detail = std::move(detail);
    r.where = std::move(where);
  };
  c.ok("memslot_set", mmu->memslot_set(kSlot, 0, kSlotPages));
  c.layout.slots[kSlot] = {0, kSlotPages, false};
  sc.setup(c);
  sync::DetEngine e(strategy, ec.limits);
  // Its threads are parked for good after a deadlock: nothing may touch the
  // VM again.
  auto parked = [&](const char* phase) {
    r.aborted = true;
    fail(e.abort_reason().rfind("deadlock", 0) == 0 ? "deadlock" : "livelock", e.abort_reason(), phase);
    mmu->abandon();
    (void)mmu.release();
  };
  for (const auto& [name, fn] : sc.threads) e.spawn(name, [&c, f = fn] { f(c); });
  if (!e.run()) {
    record_engine(e, r);
    parked("the race");
    return r;
  }
  if (!e.violations().empty()) fail("use_after_grace_period", e.violations().front(), "the race");
  if (!c.error.empty()) fail(c.error.substr(0, c.error.find(':')), c.error, "the race");
  if (std::string v = mmu->hw().violation(); !v.empty()) fail(v.substr(0, v.find(':')), v, "the race");
  if (std::string err = check_direct(*mmu, c.layout); !err.empty()) fail(err.substr(0, err.find(':')), err, "after the race");
  if (sc.check_dirty) {
    c.collect();
    if (std::string err = check_dirty_log(c.layout.slots[kSlot], c.written, c.logged); !err.empty())
      fail(err.substr(0, err.find(':')), err, "after the race");
  }
  // The table's rows: a direct root refuses nothing, so attempts are the
  // whole story (a WARN of the MMU fails the execution instead).
  r.rows.assign(kTransitionRows, TransitionRow{});
  for (size_t i = 0; i < TransitionCounts::kClasses; i++) {
    r.classes[i] = mmu->stats().transitions.count(i) != 0;
    r.rows[i].attempts = mmu->stats().transitions.count(i);
  }
  r.end_state = end_state_digest(*mmu);
  // Destruction under the engine too: its RCU callbacks run as the engine's,
  // not after a native grace period (which costs milliseconds a run).
  int64_t left = 0;
  e.spawn("teardown", [&] { left = mmu->destroy(); });
  const bool torn_down = e.run();
  record_engine(e, r);
  if (!torn_down) {
    parked("teardown");
    return r;
  }
  if (!e.violations().empty()) fail("use_after_grace_period", e.violations().front(), "teardown");
  if (std::string v = mmu->hw().violation(); !v.empty()) fail(v.substr(0, v.find(':')), v, "teardown");
  if (left != 0) fail("leaked_page_tables", fmt::format("{} page-table pages accounted after destruction", left), "teardown");
  if (const auto w = mmu->warnings(); !w.empty()) fail("site_fired", w[0], "teardown");
  return r;
}

std::optional<explore::ExecutionSource> resolve(const std::string& name, const std::string& design,
                                                std::string* error) {
  // plain:MMU:SCENARIO
  const std::string rest = name.substr(std::string(kPrefix).size());
  const auto colon = rest.find(':');
  const std::string mmu = rest.substr(0, colon);
  const std::string scen = colon == std::string::npos ? "" : rest.substr(colon + 1);
  auto bad = [&](std::string why) -> std::optional<explore::ExecutionSource> {
    if (error) *error = std::move(why);
    return std::nullopt;
  };
  if (std::string why = direct_mmu_refusal(mmu); !why.empty()) return bad("'" + name + "': " + why);
  const PlainScenario* sc = find(scen);
  if (!sc) {
    std::string names;
    for (const auto& s : scenarios()) names += (names.empty() ? "" : ", ") + s.info.name;
    return bad("'" + name + "': no plain scenario '" + scen + "' (" + names + ")");
  }
  (void)design;  // a plain VM has no hook design
  return explore::ExecutionSource{
      [mmu, sc](sync::DetStrategy& st, const explore::ExecConfig& ec) { return run_plain(mmu, *sc, st, ec); },
      static_cast<int>(sc->threads.size())};
}

}  // namespace

const std::vector<PlainScenarioInfo>& plain_scenarios() {
  static const std::vector<PlainScenarioInfo> infos = [] {
    std::vector<PlainScenarioInfo> v;
    for (const auto& s : scenarios()) v.push_back(s.info);
    return v;
  }();
  return infos;
}

std::string plain_source_name(const std::string& mmu, const std::string& scenario) {
  return kPrefix + mmu + ":" + scenario;
}

void register_plain_source() { explore::register_source(kPrefix, &resolve); }

}  // namespace mirrormmu
