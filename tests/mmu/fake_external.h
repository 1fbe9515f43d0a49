// SPDX-License-Identifier: MIT
// A recording stand-in for the TDX side, with scriptable failures, so MMU
// tests can see exactly which hook the MMU calls, in which order, under
// which lock.
#pragma once

#include <cerrno>
#include <deque>
#include <string>
#include <vector>

#include "mmu/tdp_mmu.h"
#include "spte/spte.h"

namespace mirrormmu::test {

struct HookEvent {
  HookKind kind;
  Gfn gfn;
  PgLevel level;
  bool write_locked;
};

class FakeExternal : public ExternalOps {
 public:
  explicit FakeExternal(sync::MmuLock& l) : lock_(l) {}
  std::vector<HookEvent> events;
  std::deque<int> link_results, set_results, free_results;  // consumed front first; empty -> 0

  int link_external_spt(Gfn gfn, PgLevel level, Pfn) override { return record(HookKind::LinkExternalSpt, gfn, level, link_results); }
  int set_external_spte(Gfn gfn, PgLevel level, uint64_t) override { return record(HookKind::SetExternalSpte, gfn, level, set_results); }
  void remove_external_spte(Gfn gfn, PgLevel level, uint64_t) override {
    std::deque<int> none;
    record(HookKind::RemoveExternalSpte, gfn, level, none);
  }
  int free_external_spt(Gfn gfn, PgLevel level, Pfn) override { return record(HookKind::FreeExternalSpt, gfn, level, free_results); }

  size_t count(HookKind k) const {
    size_t n = 0;
    for (const auto& e : events) n += e.kind == k;
    return n;
  }

 private:
  int record(HookKind k, Gfn gfn, PgLevel level, std::deque<int>& results) {
    events.push_back({k, gfn, level, lock_.held_write()});
    if (results.empty()) return 0;
    const int r = results.front();
    results.pop_front();
    return r;
  }
  sync::MmuLock& lock_;
};

// A TD-shaped MMU (4-level, shared bit 47) over a small pool, with one vCPU's
// caches and roots.
struct MmuFixture {
  static constexpr uint64_t kSharedGfnBit = 1ull << (47 - kPageShift);
  PfnPool pool{1u << 14};
  BugTracker kvm;
  sync::RcuThread rcu_thread;
  TdpMmu mmu{pool, kvm, [] {
               TdpMmuConfig c;
               c.has_mirrored_tdp = true;
               c.gfn_direct_bits = kSharedGfnBit;
               c.max_gfn_exclusive = 1ull << (48 - kPageShift);
               return c;
             }()};
  FakeExternal ext{mmu.mmu_lock()};
  VcpuMmuCaches caches{pool};
  MmuPage* direct = nullptr;
  MmuPage* mirror = nullptr;

  MmuFixture() {
    mmu.set_external(&ext, find_design("baseline")->make());
    mmu.mmu_topup_memory_caches(caches);
    direct = mmu.kvm_tdp_mmu_alloc_root(caches, false);
    mirror = mmu.kvm_tdp_mmu_alloc_root(caches, true);
  }
  ~MmuFixture() { teardown(); }

  void teardown() {
    if (!direct) return;
    mmu.kvm_tdp_mmu_put_root(direct);
    mmu.kvm_tdp_mmu_put_root(mirror);
    direct = mirror = nullptr;
    caches.free_all();
    mmu.kvm_mmu_uninit_tdp_mmu();
  }

  // A fault at gfn mapping `pfn` at `level`, private or shared.
  RetPf fault(Gfn gfn, Pfn pfn, bool priv, PgLevel level = PgLevel::k4K, bool write = true) {
    mmu.mmu_topup_memory_caches(caches);
    KvmPageFault f;
    f.gfn = gfn;
    f.addr = gfn.gpa() | (priv ? 0 : kSharedGfnBit << kPageShift);
    f.is_private = priv;
    f.write = write;
    f.pfn = pfn;
    f.max_level = f.req_level = f.goal_level = level;
    sync::ReadGuard lock(mmu.mmu_lock());
    return mmu.kvm_tdp_mmu_map(caches, direct, mirror, f);
  }

  // The SPTE currently mapping gfn at `level` in a root (walks by index).
  uint64_t spte_at(MmuPage* root, Gfn gfn, PgLevel level) {
    sync::RcuReadGuard rcu;
    TdpIter it(pool, root, level, gfn, mmu.kvm_gfn_root_bits(root));
    for (; it.valid && it.gfn < gfn + 1; it.next())
      if (it.level == level) return it.old_spte;
    return spte::kNonPresent;
  }
};

}  // namespace mirrormmu::test
