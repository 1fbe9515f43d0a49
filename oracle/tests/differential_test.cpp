// SPDX-License-Identifier: GPL-2.0-only
// The model's plain VM against the kernel's own MMU: the same operations
// with the same pfns applied to both through vm/direct_mmu.h, and after each
// one the leaf SPTEs (all 64 bits, nothing masked: Accessed and Dirty as
// the CPU, aging and fast_page_fault left them), page stats, flush
// requests, return values and dirty logs must agree. Guest accesses go
// through each one's own TLB (emptied only by that MMU's flushes, so they
// agree only if the flushes do), and the host migrates pages through each
// one's MMU notifier. RapidCheck shrinks a divergence to the shortest
// operation list.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <set>
#include <sstream>

#include "oracle/kernel_backend.h"
#include "oracle/kernel_mmu.h"
#include "vm/plain_vm.h"

namespace mirrormmu::oracle {
namespace {

// 2 GiB of guest memory at gfn 0, one slot: room for two 1G pages.
constexpr uint64_t kSlotPages = 1ull << 19;
constexpr uint64_t kPfnBase = 1ull << 24;  // guest pfn = kPfnBase + gfn
// Where the host migrates a page: the same offset in every huge page, so
// a huge mapping of a region it moved whole stays aligned.
constexpr uint64_t kMigratedBase = 2ull << 24;
constexpr int kVcpus = 2;

struct Op {
  enum Kind { Fault, ZapLeafs, ZapAllFast, DirtyLogOn, DirtyLogOff, GetDirtyLog, Split, DeleteAndReadd, Migrate, Access, Age, PreFault, ExecFault, Fetch, RecoverNx } kind;
  uint64_t gfn = 0, len = 0;
  int level = 1;  // Fault: the host mapping level; Split: the target level
  bool flag = false;  // Fault: write; Split: shared
  int vcpu = 0;
};

std::string show(const Op& o) {
  std::ostringstream s;
  s << std::hex;
  switch (o.kind) {
    case Op::Fault: s << "fault vcpu" << o.vcpu << " gfn=0x" << o.gfn << " host L" << o.level << (o.flag ? " write" : " read"); break;
    case Op::ZapLeafs: s << "zap_leafs [0x" << o.gfn << ", 0x" << o.gfn + o.len << ")"; break;
    case Op::ZapAllFast: s << "zap_all_fast"; break;
    case Op::DirtyLogOn: s << "dirty_log on"; break;
    case Op::DirtyLogOff: s << "dirty_log off"; break;
    case Op::GetDirtyLog: s << "get_dirty_log"; break;
    case Op::Split: s << "split to L" << o.level << (o.flag ? " shared" : " exclusive"); break;
    case Op::DeleteAndReadd: s << "memslot delete + re-add"; break;
    case Op::Migrate: s << "host migrates gfn=0x" << o.gfn; break;
    case Op::Access: s << "guest access vcpu" << o.vcpu << " gfn=0x" << o.gfn << (o.flag ? " write" : " read"); break;
    case Op::PreFault: s << "KVM_PRE_FAULT_MEMORY vcpu" << o.vcpu << " [0x" << o.gfn << ", 0x" << o.gfn + o.len << ")"; break;
    case Op::Age: s << (o.flag ? "test_young" : "clear_young") << " [0x" << o.gfn << ", 0x" << o.gfn + o.len << ")"; break;
    case Op::ExecFault: s << "exec fault vcpu" << o.vcpu << " gfn=0x" << o.gfn << " host L" << o.level; break;
    case Op::Fetch: s << "guest fetch vcpu" << o.vcpu << " gfn=0x" << o.gfn; break;
    case Op::RecoverNx: s << "NX recovery, ratio " << std::dec << o.level; break;
  }
  return s.str();
}

// What an operation returned, comparable across the two.
std::string apply(DirectMmu& m, const Op& o) {
  std::vector<uint64_t> bits;
  switch (o.kind) {
    case Op::Fault: return std::to_string(m.fault(o.vcpu, o.gfn, o.flag, o.level));
    case Op::ZapLeafs: return std::to_string(m.zap_leafs(o.gfn, o.gfn + o.len));
    case Op::ZapAllFast: m.zap_all_fast(); return "";
    case Op::DirtyLogOn: return std::to_string(m.memslot_dirty_log(0, true));
    case Op::DirtyLogOff: return std::to_string(m.memslot_dirty_log(0, false));
    case Op::GetDirtyLog: {
      const int r = m.get_dirty_log(0, bits);
      std::ostringstream s;
      s << r;
      for (size_t w = 0; w < bits.size(); w++)
        if (bits[w]) s << " " << std::hex << w << ":" << bits[w];
      return s.str();
    }
    case Op::Split: return std::to_string(m.split_huge_pages(0, o.level, o.flag));
    case Op::DeleteAndReadd: {
      const int d = m.memslot_delete(0);
      return std::to_string(d) + "," + std::to_string(m.memslot_set(0, 0, kSlotPages));
    }
    case Op::Migrate: m.host_migrate(o.gfn, 1, kMigratedBase + o.gfn); return m.hw().violation();
    // Through each one's TLB, which only its own flushes empty.
    case Op::Access: return std::to_string(static_cast<int>(m.guest_access(o.vcpu, o.gfn, o.flag)));
    case Op::Age: return std::to_string(m.age(o.gfn, o.gfn + o.len, o.flag));
    case Op::PreFault: return std::to_string(m.pre_fault_memory(o.vcpu, o.gfn, o.len));
    case Op::ExecFault: return std::to_string(m.exec_fault(o.vcpu, o.gfn, o.level));
    case Op::Fetch: return std::to_string(static_cast<int>(m.guest_access(o.vcpu, o.gfn, false, true)));
    case Op::RecoverNx: return std::to_string(m.recover_nx_huge_pages(static_cast<unsigned>(o.level)));
  }
  return "?";
}

rc::Gen<Op> gen_op() {
  // Gfns from a few hot regions so operations overlap: the first 2M, a 2M
  // page further in, and the second 1G page.
  auto gfn = rc::gen::oneOf(rc::gen::inRange<uint64_t>(0, 512), rc::gen::inRange<uint64_t>(0x1000, 0x1400),
                            rc::gen::inRange<uint64_t>(0x40000, 0x40400));
  return rc::gen::weightedOneOf<Op>({
      {12, rc::gen::apply([](uint64_t g, int level, bool w, int v) { return Op{Op::Fault, g, 0, level, w, v}; }, gfn,
                          rc::gen::inRange(1, 4), rc::gen::arbitrary<bool>(), rc::gen::inRange(0, kVcpus))},
      {2, rc::gen::apply([](uint64_t g, uint64_t len) { return Op{Op::ZapLeafs, g, len}; }, gfn,
                         rc::gen::inRange<uint64_t>(1, 1024))},
      {1, rc::gen::just(Op{Op::ZapAllFast})},
      {1, rc::gen::just(Op{Op::DirtyLogOn})},
      {1, rc::gen::just(Op{Op::DirtyLogOff})},
      {2, rc::gen::just(Op{Op::GetDirtyLog})},
      {1, rc::gen::apply([](int level, bool shared) { return Op{Op::Split, 0, 0, level, shared}; }, rc::gen::inRange(1, 3),
                         rc::gen::arbitrary<bool>())},
      {1, rc::gen::just(Op{Op::DeleteAndReadd})},
      {1, rc::gen::apply([](uint64_t g) { return Op{Op::Migrate, g}; }, gfn)},
      {6, rc::gen::apply([](uint64_t g, bool w, int v) { return Op{Op::Access, g, 0, 1, w, v}; }, gfn,
                         rc::gen::arbitrary<bool>(), rc::gen::inRange(0, kVcpus))},
      {1, rc::gen::apply([](uint64_t g, uint64_t len, int v) { return Op{Op::PreFault, g, len, 1, false, v}; }, gfn,
                         rc::gen::inRange<uint64_t>(1, 600), rc::gen::inRange(0, kVcpus))},
      {2, rc::gen::apply([](uint64_t g, uint64_t len, bool test) { return Op{Op::Age, g, len, 1, test}; }, gfn,
                         rc::gen::inRange<uint64_t>(1, 1024), rc::gen::arbitrary<bool>())},
      {3, rc::gen::apply([](uint64_t g, int level, int v) { return Op{Op::ExecFault, g, 0, level, false, v}; }, gfn,
                         rc::gen::inRange(1, 4), rc::gen::inRange(0, kVcpus))},
      {2, rc::gen::apply([](uint64_t g, int v) { return Op{Op::Fetch, g, 0, 1, false, v}; }, gfn,
                         rc::gen::inRange(0, kVcpus))},
      {1, rc::gen::apply([](int ratio) { return Op{Op::RecoverNx, 0, 0, ratio}; }, rc::gen::inRange(0, 4))},
  });
}

// The first differences between two leaf lists (a split 1G page is 262144
// leaves: compare sorted vectors, not maps).
std::string diff(std::vector<DirectLeaf> m, std::vector<DirectLeaf> k) {
  auto by_gfn = [](const DirectLeaf& a, const DirectLeaf& b) { return a.gfn != b.gfn ? a.gfn < b.gfn : a.level < b.level; };
  std::sort(m.begin(), m.end(), by_gfn);
  std::sort(k.begin(), k.end(), by_gfn);
  std::ostringstream s;
  s << std::hex;
  int shown = 0;
  size_t i = 0, j = 0;
  while ((i < m.size() || j < k.size()) && shown < 8) {
    if (j == k.size() || (i < m.size() && by_gfn(m[i], k[j]))) {
      s << "  gfn 0x" << m[i].gfn << " L" << m[i].level << ": model 0x" << m[i].spte << ", kernel none\n";
      i++, shown++;
    } else if (i == m.size() || by_gfn(k[j], m[i])) {
      s << "  gfn 0x" << k[j].gfn << " L" << k[j].level << ": model none, kernel 0x" << k[j].spte << "\n";
      j++, shown++;
    } else {
      if (m[i].spte != k[j].spte)
        s << "  gfn 0x" << m[i].gfn << " L" << m[i].level << ": model 0x" << m[i].spte << ", kernel 0x" << k[j].spte << "\n", shown++;
      i++, j++;
    }
  }
  return s.str();
}

RC_GTEST_PROP(Differential, ThePlainVmAgreesWithTheKernelsAfterEveryOperation, ()) {
  const auto ops = *rc::gen::container<std::vector<Op>>(gen_op()).as("operations");
  const bool nx = *rc::gen::arbitrary<bool>().as("nx_huge_pages");
  register_kernel_mmu();
  // The tree is 6.12: no early SPURIOUS for an allowed access.
  PlainVm model(PlainVmConfig{kVcpus, KernelMmu::tree_version().rfind("6.12.", 0) != 0});
  auto kernel = find_direct_mmu("kernel")(kVcpus);
  model.host().set_base(kPfnBase);
  kernel->host().set_base(kPfnBase);
  RC_ASSERT(model.set_nx_huge_pages(nx) == 0);
  RC_ASSERT(kernel->set_nx_huge_pages(nx) == 0);
  RC_ASSERT(model.memslot_set(0, 0, kSlotPages) == 0);
  RC_ASSERT(kernel->memslot_set(0, 0, kSlotPages) == 0);
  std::string trail;
  // Gfns the host moved: a host mapping over them is no longer one huge
  // page, so a fault there sees the level host_pfn_mapping_level() would.
  std::set<uint64_t> moved;
  auto host_level = [&](uint64_t gfn, int want) {
    for (int level = want; level > 1; level--) {
      const uint64_t n = pages_per_hpage(to_level(level)), base = gfn & ~(n - 1);
      auto it = moved.lower_bound(base);
      if (it == moved.end() || *it >= base + n) return level;
    }
    return 1;
  };
  for (Op o : ops) {
    if (o.kind == Op::Fault || o.kind == Op::ExecFault) o.level = host_level(o.gfn, o.level);
    if (o.kind == Op::Migrate) moved.insert(o.gfn);
    trail += "  " + show(o) + "\n";
    const std::string rm = apply(model, o), rk = apply(*kernel, o);
    if (const auto wk = kernel->warnings(); !wk.empty())
      RC_FAIL("after\n" + trail + "the kernel's code fired: " + wk.back());
    if (rm != rk) RC_FAIL("after\n" + trail + "the model returned '" + rm + "', the kernel '" + rk + "'");
    const std::string d = diff(model.leaves(), kernel->leaves());
    if (!d.empty()) RC_FAIL("after\n" + trail + "the leaves differ:\n" + d);
    for (int level = 1; level <= 3; level++)
      if (model.pages(level) != kernel->pages(level))
        RC_FAIL("after\n" + trail + "stat.pages[" + std::to_string(level - 1) + "]: model " +
                std::to_string(model.pages(level)) + ", kernel " + std::to_string(kernel->pages(level)));
    if (model.stats().flushes.load() != kernel->stats().flushes.load())
      RC_FAIL("after\n" + trail + "flush requests: model " + std::to_string(model.stats().flushes.load()) + ", kernel " +
              std::to_string(kernel->stats().flushes.load()));
  }
  const auto wm = model.warnings(), wk = kernel->warnings();
  if (!wm.empty() || !wk.empty())
    RC_FAIL("after\n" + trail + "sites fired: model '" + (wm.empty() ? "" : wm[0]) + "', kernel '" + (wk.empty() ? "" : wk[0]) + "'");
  RC_ASSERT(model.destroy() == 0);
  RC_ASSERT(kernel->destroy() == 0);
}

}  // namespace
}  // namespace mirrormmu::oracle
