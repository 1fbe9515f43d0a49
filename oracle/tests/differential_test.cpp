// SPDX-License-Identifier: GPL-2.0-only
// The model's direct root against the kernel's own: the same operations with
// the same pfns applied to both, then the leaf SPTEs and page stats must
// agree. RapidCheck shrinks a divergence to the shortest operation list.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <map>
#include <sstream>

#include "base/bug.h"
#include "mem/pfn_pool.h"
#include "mmu/tdp_iter.h"
#include "mmu/tdp_mmu.h"
#include "oracle/kernel_mmu.h"
#include "sync/mmu_lock.h"
#include "sync/rcu.h"

namespace mirrormmu::oracle {
namespace {

// 2 GiB of guest memory at gfn 0, one slot: room for two 1G pages.
constexpr uint64_t kSlotPages = 1ull << 19;
constexpr uint64_t kPfnBase = 1ull << 24;  // guest pfn = kPfnBase + gfn

struct Op {
  enum Kind { Fault, ZapLeafs, ZapAll } kind;
  uint64_t gfn = 0, len = 0;
  int level = 1;
  bool write = false;
};

std::string show(const Op& o) {
  std::ostringstream s;
  switch (o.kind) {
    case Op::Fault: s << "fault gfn=0x" << std::hex << o.gfn << std::dec << " level=" << o.level << (o.write ? " write" : " read"); break;
    case Op::ZapLeafs: s << "zap_leafs [0x" << std::hex << o.gfn << ", 0x" << o.gfn + o.len << ")"; break;
    case Op::ZapAll: s << "zap_all"; break;
  }
  return s.str();
}

// The model's plain (non-TD) VM: one vCPU, one direct root.
struct Model {
  PfnPool pool{1u << 16};
  BugTracker kvm;
  sync::RcuThread rcu;
  TdpMmu mmu{pool, kvm, [] {
               TdpMmuConfig c;
               c.max_gfn_exclusive = 1ull << (48 - kPageShift);
               // The tree is 6.12: no early SPURIOUS for an allowed access.
               c.spurious_if_access_allowed = KernelMmu::tree_version().rfind("6.12.", 0) != 0;
               return c;
             }()};
  VcpuMmuCaches caches{pool};
  MmuPage* root = nullptr;
  Model() {
    mmu.mmu_topup_memory_caches(caches);
    root = mmu.kvm_tdp_mmu_alloc_root(caches, false);
  }
  ~Model() {
    mmu.kvm_tdp_mmu_put_root(root);
    caches.free_all();
    mmu.kvm_mmu_uninit_tdp_mmu();
  }
  void apply(const Op& o) {
    switch (o.kind) {
      case Op::Fault: {
        mmu.mmu_topup_memory_caches(caches);
        KvmPageFault f;
        f.gfn = Gfn{o.gfn};
        f.addr = f.gfn.gpa();
        f.write = o.write;
        const PgLevel l = to_level(o.level);
        // kvm_mmu_hugepage_adjust(): the pfn rounded down to the level.
        f.pfn = Pfn{(kPfnBase + o.gfn) & ~(pages_per_hpage(l) - 1)};
        f.max_level = f.req_level = f.goal_level = l;
        sync::ReadGuard g(mmu.mmu_lock());
        mmu.kvm_tdp_mmu_map(caches, root, nullptr, f);
        break;
      }
      case Op::ZapLeafs: {
        sync::WriteGuard g(mmu.mmu_lock());
        if (mmu.kvm_tdp_mmu_zap_leafs(Gfn{o.gfn}, Gfn{o.gfn + o.len}, false)) mmu.kvm_flush_remote_tlbs();
        break;
      }
      case Op::ZapAll: {
        sync::WriteGuard g(mmu.mmu_lock());
        mmu.kvm_tdp_mmu_zap_all();
        break;
      }
    }
  }
  std::map<std::pair<uint64_t, int>, uint64_t> leaves() {
    std::map<std::pair<uint64_t, int>, uint64_t> out;
    sync::RcuReadGuard rcu_guard;
    for (TdpIter it(pool, root, PgLevel::k4K, Gfn{0}, 0); it.valid && it.gfn < Gfn{kSlotPages}; it.next())
      if (spte::is_leaf(it.old_spte, it.level)) out[{it.gfn.v, lvl(it.level)}] = it.old_spte;
    return out;
  }
};

void apply(KernelMmu& k, const Op& o) {
  switch (o.kind) {
    case Op::Fault: k.fault(0, o.gfn, kPfnBase + o.gfn, o.write, false, o.level); break;
    case Op::ZapLeafs: k.zap_leafs(o.gfn, o.gfn + o.len); break;
    case Op::ZapAll: k.zap_all(); break;
  }
}

rc::Gen<Op> gen_op() {
  // Gfns from a few hot regions so operations overlap: the first 2M, a 2M
  // page further in, and the second 1G page.
  auto gfn = rc::gen::oneOf(rc::gen::inRange<uint64_t>(0, 512), rc::gen::inRange<uint64_t>(0x1000, 0x1400),
                            rc::gen::inRange<uint64_t>(0x40000, 0x40400));
  return rc::gen::oneOf(
      rc::gen::apply([](uint64_t g, int level, bool w) { return Op{Op::Fault, g, 0, level, w}; }, gfn,
                     rc::gen::inRange(1, 4), rc::gen::arbitrary<bool>()),
      rc::gen::apply([](uint64_t g, uint64_t len) { return Op{Op::ZapLeafs, g, len, 1, false}; }, gfn,
                     rc::gen::inRange<uint64_t>(1, 1024)),
      rc::gen::just(Op{Op::ZapAll}));
}

std::string diff(const std::map<std::pair<uint64_t, int>, uint64_t>& model, const std::vector<KernelLeaf>& kernel) {
  std::map<std::pair<uint64_t, int>, uint64_t> k;
  for (const auto& l : kernel) k[{l.gfn, l.level}] = l.spte;
  std::ostringstream s;
  for (const auto& [key, v] : model) {
    auto it = k.find(key);
    if (it == k.end()) s << "  gfn 0x" << std::hex << key.first << " L" << key.second << ": model 0x" << v << ", kernel none\n";
    else if (it->second != v) s << "  gfn 0x" << std::hex << key.first << " L" << key.second << ": model 0x" << v << ", kernel 0x" << it->second << "\n";
  }
  for (const auto& [key, v] : k)
    if (!model.count(key)) s << "  gfn 0x" << std::hex << key.first << " L" << key.second << ": model none, kernel 0x" << v << "\n";
  return s.str();
}

RC_GTEST_PROP(Differential, DirectRootAgreesWithTheKernelsAfterEveryOperation, ()) {
  const auto ops = *rc::gen::container<std::vector<Op>>(gen_op()).as("operations");
  Model m;
  KernelMmu k;
  RC_ASSERT(k.memslot_set(0, 0, kSlotPages) == 0);
  std::string trail;
  for (const Op& o : ops) {
    trail += "  " + show(o) + "\n";
    m.apply(o);
    apply(k, o);
    const std::string d = diff(m.leaves(), k.leaves());
    if (!d.empty()) RC_FAIL("after\n" + trail + "the leaves differ:\n" + d);
    for (int level = 1; level <= 3; level++)
      RC_ASSERT(m.mmu.stats().pages[level - 1].load() == k.pages(level));
  }
  RC_ASSERT(k.warns.empty());
  RC_ASSERT(m.kvm.total_hits() == 0u);
}

}  // namespace
}  // namespace mirrormmu::oracle
