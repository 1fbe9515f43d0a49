// SPDX-License-Identifier: MIT
// Property tests of the VM layer against a reference model.
//
// RapidCheck generates short sequences of VMM-level operations on a small TD
// (guest accesses and EPT violations through either alias, conversions,
// PUNCH_HOLE, dirty logging, memslot deletion and re-creation). After every
// operation the raw page tables are read with raw_walk (not with the MMU's
// own iterator) and compared with a deliberately naive model made of sets of
// gfns. The model knows nothing about page tables: it only knows what the
// guest touched, what userspace invalidated, and what the attributes are, so
// a bug in the MMU cannot hide behind a matching bug in the check. The
// Checker runs after every operation too, for the structural invariants the
// model does not know about (stats, S-EPT tables, ownership).
#include <gtest/gtest.h>
#include <rapidcheck.h>
// After gtest.h: the adapter uses GoogleTest's macros.
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "check/checker.h"
#include "check/raw_walker.h"
#include "spte/spte.h"
#include "sync/mmu_lock.h"
#include "sync/rcu.h"
#include "tdx/module.h"
#include "vm/vm.h"

namespace mirrormmu::test {
namespace {

// ---- the TD under test --------------------------------------------------------

constexpr int kVcpus = 2;
constexpr uint64_t kPoolPages = 1ull << 15;

struct SlotGeom {
  int id;
  uint64_t gpa;
  uint64_t size;
  uint32_t flags;
  uint64_t npages() const { return size >> kPageShift; }
  Gfn base() const { return Gfn::from_gpa(gpa); }
};
// Slot 0: guest RAM with guest_memfd; slot 1: a shared-only buffer. Both are
// 2M-aligned so the shared side can be mapped with huge pages.
constexpr SlotGeom kSlots[2] = {
    {0, 1ull << 32, 4ull << 20, kMemGuestMemfd},
    {1, 1ull << 30, 2ull << 20, 0},
};
constexpr uint64_t kHugePages = pages_per_hpage(PgLevel::k2M);

// ---- operations ----------------------------------------------------------------

enum class OpKind : uint8_t {
  Access,       // Vm::vcpu_access on `count` consecutive pages
  Fault,        // Vm::vcpu_fault on one page (only once the TD is runnable)
  Convert,      // KVM_SET_MEMORY_ATTRIBUTES
  PunchHole,    // fallocate(PUNCH_HOLE) on guest_memfd
  DirtyLogging, // toggle KVM_MEM_LOG_DIRTY_PAGES on slot 1
  GetDirtyLog,  // KVM_GET_DIRTY_LOG on slot 1
  DeleteSlot1,
  ReaddSlot1,   // KVM_SET_USER_MEMORY_REGION2 for slot 1 again, if deleted
  Finalize,
};

// One operation; which fields matter depends on `kind` (see operator<<).
// `page` is generated inside its slot (the modulo when the op runs only
// guards hand-written ops).
struct Op {
  OpKind kind = OpKind::Finalize;
  int vcpu = 0;
  int slot = 0;
  bool priv = false;   // Access/Fault: private GPA; Convert: to private; DirtyLogging: on
  bool write = false;
  // Access: each page is read, then written (when `write`), the way a guest
  // updates memory it has just looked at.
  bool read_first = false;
  uint32_t page = 0;
  uint32_t count = 1;  // pages
  bool overrun = false;  // Convert/PunchHole: do not clip the range to the slot
  bool accept_2m = false;  // Access: the guest accepts 2M at a time (falls back to 4K)
};

std::ostream& operator<<(std::ostream& os, const Op& op) {
  switch (op.kind) {
    case OpKind::Access:
      return os << "access vcpu" << op.vcpu
                << (op.write ? (op.read_first ? " read+write " : " write ") : " read ")
                << (op.priv ? "private" : "shared") << " slot" << op.slot << " pages [" << op.page
                << ",+" << op.count << ")" << (op.priv && op.accept_2m ? " accepting 2M" : "");
    case OpKind::Fault:
      return os << "fault vcpu" << op.vcpu << (op.write ? " write " : " read ")
                << (op.priv ? "private" : "shared") << " slot" << op.slot << " page " << op.page;
    case OpKind::Convert:
      return os << "convert slot" << op.slot << " [" << op.page << ",+" << op.count << ")"
                << (op.overrun ? " unclipped" : "") << " -> " << (op.priv ? "private" : "shared");
    case OpKind::PunchHole:
      return os << "punch hole slot" << op.slot << " [" << op.page << ",+" << op.count << ")"
                << (op.overrun ? " unclipped" : "");
    case OpKind::DirtyLogging: return os << "dirty logging slot1 " << (op.priv ? "on" : "off");
    case OpKind::GetDirtyLog: return os << "get dirty log slot1";
    case OpKind::DeleteSlot1: return os << "delete slot1";
    case OpKind::ReaddSlot1: return os << "re-add slot1";
    case OpKind::Finalize: return os << "finalize";
  }
  return os << "?";
}

// What happens before the generated operations.
struct TdBuild {
  uint32_t init_page = 0;   // first page of slot 0 added with PAGE.ADD
  uint32_t init_pages = 0;  // 0: no initial image
  bool finalize_first = true;
  // Slot 1 dirty-logged before the guest ever touches it, so its pages are
  // first faulted in while logging is on (the selftests' usual order).
  bool log_slot1 = false;
  // All of slot 0 made private before the operations (after finalize), as
  // td-life does: the case where 2M private mappings are possible at once.
  bool slot0_private = false;
};

std::ostream& operator<<(std::ostream& os, const TdBuild& s) {
  return os << "{init_mem_region slot0 [" << s.init_page << ",+" << s.init_pages << ")"
            << (s.finalize_first ? ", finalize" : ", no finalize")
            << (s.log_slot1 ? ", dirty logging slot1 on" : "") << (s.slot0_private ? ", slot0 private" : "") << "}";
}

// ---- generators ------------------------------------------------------------------

// Page numbers cluster at the edges of slots and of 2M blocks, where
// operations overlap and huge mappings start and end.
rc::Gen<uint32_t> gen_page() {
  return rc::gen::oneOf(rc::gen::inRange<uint32_t>(0, 4), rc::gen::inRange<uint32_t>(508, 516),
                        rc::gen::inRange<uint32_t>(0, 1024));
}
// Range sizes from one page to 2M+4K, the sizes private_mem_conversions_test uses.
rc::Gen<uint32_t> gen_range_pages() {
  return rc::gen::oneOf(rc::gen::inRange<uint32_t>(1, 4), rc::gen::inRange<uint32_t>(510, 514),
                        rc::gen::inRange<uint32_t>(1, 514));
}
rc::Gen<int> gen_slot() { return rc::gen::inRange(0, 2); }
uint32_t in_slot(int slot, uint32_t page) { return static_cast<uint32_t>(page % kSlots[slot].npages()); }
rc::Gen<bool> gen_bool() { return rc::gen::arbitrary<bool>(); }

rc::Gen<Op> gen_op() {
  using namespace rc;
  auto access = gen::apply(
      [](int vcpu, int slot, bool priv, bool write, bool read_first, uint32_t page, uint32_t count, bool a2m) {
        Op op{OpKind::Access, vcpu, slot, priv, write, write && read_first, in_slot(slot, page), count};
        op.accept_2m = a2m;
        return op;
      },
      gen::inRange(0, kVcpus), gen_slot(), gen_bool(), gen_bool(), gen_bool(), gen_page(),
      gen::inRange<uint32_t>(1, 9), gen_bool());
  auto fault = gen::apply(
      [](int vcpu, int slot, bool priv, bool write, uint32_t page) {
        return Op{OpKind::Fault, vcpu, slot, priv, write, false, in_slot(slot, page), 1};
      },
      gen::inRange(0, kVcpus), gen_slot(), gen_bool(), gen_bool(), gen_page());
  auto range = [](OpKind k) {
    return gen::apply(
        [k](int slot, bool priv, uint32_t page, uint32_t count, bool overrun) {
          return Op{k, 0, slot, priv, false, false, in_slot(slot, page), count, overrun};
        },
        gen_slot(), gen_bool(), gen_page(), gen_range_pages(),
        gen::weightedElement<bool>({{7, false}, {1, true}}));
  };
  auto dirty = gen::map(gen_bool(), [](bool on) { return Op{OpKind::DirtyLogging, 0, 1, on}; });
  auto simple = [](OpKind k) { return gen::just(Op{k, 0, 1}); };
  return gen::weightedOneOf<Op>({
      {12, access},
      {3, fault},
      {5, range(OpKind::Convert)},
      {3, range(OpKind::PunchHole)},
      {3, dirty},
      {3, simple(OpKind::GetDirtyLog)},
      {1, simple(OpKind::DeleteSlot1)},
      {1, simple(OpKind::ReaddSlot1)},
      {1, simple(OpKind::Finalize)},
  });
}

rc::Gen<TdBuild> gen_build() {
  return rc::gen::apply(
      [](uint32_t page, uint32_t pages, bool fin, bool log, bool priv) {
        return TdBuild{page, pages, fin, log, priv};
      },
      gen_page(), rc::gen::inRange<uint32_t>(0, 9),
      rc::gen::weightedElement<bool>({{3, true}, {1, false}}), gen_bool(), gen_bool());
}

// RapidCheck scales integer ranges by the size parameter (at size 40,
// inRange(0, 2) only ever yields 0), so every field is generated at the
// nominal size; only the length of the sequence uses the size.
template <class T>
rc::Gen<T> full_range(rc::Gen<T> g) {
  return rc::gen::resize(rc::kNominalSize, std::move(g));
}

// 0..40 operations: long enough for a read, a write and a get of the
// same page to line up, short enough to stay fast under ASan.
rc::Gen<std::vector<Op>> gen_ops() {
  return rc::gen::resize(40, rc::gen::container<std::vector<Op>>(full_range(gen_op())));
}

// ---- the reference model ------------------------------------------------------------

// What userspace and the guest did, and therefore what must (and may) be
// mapped. Gfns are un-aliased (no shared bit).
struct Model {
  bool finalized = false;
  bool live[2] = {true, true};
  std::vector<uint8_t> priv_attr[2] = {std::vector<uint8_t>(kSlots[0].npages()),
                                       std::vector<uint8_t>(kSlots[1].npages())};
  // Shared gfns the guest reached since they were last invalidated: they
  // must be mapped in the direct root.
  std::set<uint64_t> shared_mapped;
  // Private gfns mapped since last invalidated -> whether the guest has
  // accepted them (S-EPT MAPPED) or only a fault mapped them (PENDING is fine).
  std::map<uint64_t, bool> private_mapped;
  bool logging = false;
  std::set<uint64_t> dirty;    // slot-1 page indices written since the last get
  std::set<uint64_t> touched;  // ... read or written (a read fault maps writable and is logged, as in KVM)

  // The slot holding `gfn` as the model sees it, or -1.
  int slot_of(uint64_t gfn) const {
    for (int s = 0; s < 2; s++)
      if (live[s] && gfn >= kSlots[s].base().v && gfn < kSlots[s].base().v + kSlots[s].npages()) return s;
    return -1;
  }
  bool is_private(uint64_t gfn) const {
    const int s = slot_of(gfn);
    return s >= 0 && priv_attr[s][gfn - kSlots[s].base().v];
  }

  // A shared-side zap of [lo, hi) may take a whole 2M mapping with it, so
  // every gfn in a touched 2M block stops being guaranteed. (Both slots are
  // smaller than 1G, so no larger mapping fits in them.)
  void drop_shared(uint64_t lo, uint64_t hi) {
    lo &= ~(kHugePages - 1);
    hi = (hi + kHugePages - 1) & ~(kHugePages - 1);
    shared_mapped.erase(shared_mapped.lower_bound(lo), shared_mapped.lower_bound(hi));
  }
  // Mirror leaves are 4K only: a private zap is exact.
  void drop_private(uint64_t lo, uint64_t hi) {
    private_mapped.erase(private_mapped.lower_bound(lo), private_mapped.lower_bound(hi));
  }

  // The exit a guest access or fault must end with.
  ExitReason expected_exit(uint64_t gfn, bool priv) const {
    if (!finalized) return ExitReason::Retry;  // TDH.VP.ENTER is refused before finalize
    const int s = slot_of(gfn);
    if (priv) return (s >= 0 && (kSlots[s].flags & kMemGuestMemfd) && is_private(gfn)) ? ExitReason::None
                                                                                        : ExitReason::MemoryFault;
    if (s < 0) return ExitReason::Mmio;
    return is_private(gfn) ? ExitReason::MemoryFault : ExitReason::None;
  }
};

// ---- reading the tables ---------------------------------------------------------------

struct Observed {
  // Every root, valid or not: un-aliased gfn -> pfn, at 4K granularity.
  std::map<uint64_t, Pfn> mirror;
  std::map<uint64_t, Pfn> direct;
  // Gfns mapped by valid roots only: what a vCPU can actually use.
  std::set<uint64_t> usable_mirror, usable_direct;
  std::vector<std::string> errors;
};

Observed observe(Vm& vm) {
  Observed o;
  const uint64_t direct_bits = vm.mmu().config().gfn_direct_bits;
  sync::RcuThread rcu_thread;
  sync::WriteGuard lock(vm.mmu().mmu_lock());
  sync::RcuReadGuard rcu;
  RawTree tree;
  vm.mmu().for_each_root([&](MmuPage* root) {
    raw_walk(vm.pool(), root->spt, root->role.level, vm.mmu().config().mmio_value, tree);
    const bool mirror = root->is_mirror();
    auto& out = mirror ? o.mirror : o.direct;
    auto& usable = mirror ? o.usable_mirror : o.usable_direct;
    for (const RawLeaf& lf : tree.leaves) {
      // A direct-root leaf of a TD maps a shared GPA, a mirror leaf a private one.
      const bool aliased = (lf.gfn.v & direct_bits) != 0;
      if (aliased == mirror) {
        std::ostringstream ss;
        ss << (mirror ? "mirror" : "direct") << " root maps raw gfn 0x" << std::hex << lf.gfn.v
           << (aliased ? " with" : " without") << " the shared bit";
        o.errors.push_back(ss.str());
      }
      const uint64_t base = lf.gfn.v & ~direct_bits;
      for (uint64_t i = 0; i < pages_per_hpage(lf.level); i++) {
        auto [it, fresh] = out.emplace(base + i, lf.pfn + i);
        if (!root->role.invalid) usable.insert(base + i);
        // Two roots of the same kind must agree on what a gfn maps to.
        if (!fresh && it->second != lf.pfn + i) {
          std::ostringstream ss;
          ss << "two " << (mirror ? "mirror" : "direct") << " roots map gfn 0x" << std::hex << base + i
             << " to different pfns";
          o.errors.push_back(ss.str());
        }
      }
    }
  });
  return o;
}

std::string hex(uint64_t v) {
  std::ostringstream ss;
  ss << "0x" << std::hex << v;
  return ss.str();
}

// The S-EPT leaf that maps gfn, at whatever level, with the pfn of gfn itself.
tdx::TdxModule::EntryView covering_leaf(Vm& vm, uint64_t gfn) {
  auto e = vm.module()->read_leaf(Gfn{gfn}.gpa());
  if (e.pfn.valid()) e.pfn = e.pfn + (Gfn{gfn}.gpa() - e.gpa) / kPageSize;
  return e;
}

// Compares the tables with the model. Returns the discrepancies.
std::vector<std::string> compare(Vm& vm, const Model& m) {
  Observed o = observe(vm);
  std::vector<std::string>& err = o.errors;

  // (b) Every mapping is allowed: a live slot, the right side for the
  // gfn's attribute, the backing's pfn; a private one also in the S-EPT.
  auto check_mapped = [&](const std::map<uint64_t, Pfn>& leaves, bool mirror) {
    for (const auto& [gfn, pfn] : leaves) {
      const char* side = mirror ? "mirror" : "direct";
      const int s = m.slot_of(gfn);
      if (s < 0) {
        err.push_back(std::string(side) + " root maps gfn " + hex(gfn) + " outside every live memslot");
        continue;
      }
      if (m.is_private(gfn) != mirror) {
        err.push_back(std::string(side) + " root maps gfn " + hex(gfn) + " whose attribute is " +
                      (m.is_private(gfn) ? "private" : "shared"));
        continue;
      }
      const Memslot* slot = vm.find_slot(Gfn{gfn});
      if (!slot || slot->id != kSlots[s].id) {
        err.push_back("VM and model disagree on the memslot of gfn " + hex(gfn));
        continue;
      }
      const Backing* b = mirror ? slot->gmem.get() : slot->shared.get();
      const Pfn want = b ? b->peek_pfn(gfn - slot->base_gfn.v) : kInvalidPfn;
      if (want != pfn)
        err.push_back(std::string(side) + " root maps gfn " + hex(gfn) + " to pfn " + hex(pfn.v) +
                      ", the backing has " + hex(want.v));
      if (mirror) {
        const auto e = covering_leaf(vm, gfn);
        if (!tdx::is_leaf_state(e.state) || e.pfn != pfn)
          err.push_back("mirror leaf at gfn " + hex(gfn) + " pfn " + hex(pfn.v) + " but S-EPT has " +
                        tdx::sept_state_name(e.state) + " pfn " + hex(e.pfn.v));
      }
    }
  };
  check_mapped(o.mirror, true);
  check_mapped(o.direct, false);

  // (a) Everything the guest reached and nobody invalidated is still mapped.
  for (uint64_t gfn : m.shared_mapped)
    if (!o.usable_direct.count(gfn)) err.push_back("shared gfn " + hex(gfn) + " was accessed but is not mapped");
  for (const auto& [gfn, accepted] : m.private_mapped) {
    if (!o.usable_mirror.count(gfn)) {
      err.push_back("private gfn " + hex(gfn) + " was accessed but is not in the mirror root");
      continue;
    }
    const auto e = covering_leaf(vm, gfn);
    const bool ok = accepted ? e.state == tdx::SeptState::Mapped
                             : tdx::is_leaf_state(e.state) && !tdx::is_blocked_state(e.state);
    if (!ok)
      err.push_back("private gfn " + hex(gfn) + (accepted ? " was accepted" : " was faulted in") +
                    " but its S-EPT leaf is " + tdx::sept_state_name(e.state));
  }

  // (d) Nothing went wrong inside.
  if (vm.bugs().bugged()) err.push_back("the VM is bugged");
  if (vm.bugs().total_hits()) err.push_back("a bug/warn site was hit: " + std::to_string(vm.bugs().total_hits()));
  return err;
}

// ---- running one case ---------------------------------------------------------------------

struct Variant {
  int ept_levels = 4;
  unsigned resched_interval = 0;
  const char* design = "baseline";
  bool huge_pages = false;
  ExternalSptPolicy policy = ExternalSptPolicy::KvmCache;
  SplitAlloc split_alloc = SplitAlloc::Prefilled;
};

// Runs `op` on the VM and the model; returns a discrepancy or "".
std::string step(Vm& vm, Model& m, const Op& op) {
  const uint64_t shared_bit = vm.shared_gpa_bit();
  const SlotGeom& g = kSlots[op.slot];
  const uint64_t first = op.page % g.npages();
  std::ostringstream bad;

  auto guest = [&](uint64_t page, bool fault, bool write) {
    const uint64_t gfn = g.base().v + page;
    const uint64_t gpa = Gfn{gfn}.gpa() | (op.priv ? 0 : shared_bit);
    const ExitReason want = m.expected_exit(gfn, op.priv);
    const ExitReason got = fault ? vm.vcpu_fault(op.vcpu, gpa, write)
                                 : vm.vcpu_access(op.vcpu, gpa, write, op.accept_2m ? PgLevel::k2M : PgLevel::k4K);
    if (got != want) {
      bad << "gpa " << hex(gpa) << " exited with " << exit_reason_name(got) << ", expected "
          << exit_reason_name(want) << "; ";
      return;
    }
    if (got != ExitReason::None) return;
    if (op.priv) {
      // An access leaves the page accepted; a bare fault only AUGs it.
      bool& accepted = m.private_mapped[gfn];
      accepted = accepted || !fault;
    } else {
      m.shared_mapped.insert(gfn);
    }
    if (write && op.slot == 1 && m.logging) m.dirty.insert(page);
    if (op.slot == 1 && m.logging) m.touched.insert(page);
  };

  // The range of a Convert/PunchHole: clipped to the slot unless `overrun`.
  const uint64_t n = op.overrun ? op.count : std::min<uint64_t>(op.count, g.npages() - first);
  const uint64_t lo = g.base().v + first, hi = lo + n;

  switch (op.kind) {
    case OpKind::Access:
      for (uint64_t p = first; p < std::min<uint64_t>(first + op.count, g.npages()); p++) {
        if (op.read_first) guest(p, false, false);
        guest(p, false, op.write);
      }
      break;
    case OpKind::Fault:
      // Before finalize no vCPU can run, so there are no EPT violations.
      if (m.finalized) guest(first, true, op.write);
      break;
    case OpKind::Convert: {
      bool all_in_slots = true;
      for (uint64_t gfn = lo; gfn < hi; gfn++) all_in_slots &= m.slot_of(gfn) >= 0;
      const int want = all_in_slots ? 0 : -EINVAL;
      const int got = vm.set_memory_attributes(Gfn{lo}.gpa(), n << kPageShift, op.priv);
      if (got != want) bad << "set_memory_attributes returned " << got << ", expected " << want;
      if (got != 0) break;
      if (op.priv) m.drop_shared(lo, hi); else m.drop_private(lo, hi);
      for (uint64_t gfn = lo; gfn < hi; gfn++) {
        const int s = m.slot_of(gfn);
        m.priv_attr[s][gfn - kSlots[s].base().v] = op.priv;
      }
      break;
    }
    case OpKind::PunchHole: {
      const int got = vm.punch_hole(Gfn{lo}.gpa(), n << kPageShift);
      if (got != 0) bad << "punch_hole returned " << got;
      m.drop_private(lo, hi);
      break;
    }
    case OpKind::DirtyLogging: {
      const int want = m.live[1] ? 0 : -EINVAL;
      const int got = vm.set_dirty_logging(1, op.priv);
      if (got != want) bad << "set_dirty_logging returned " << got << ", expected " << want;
      if (got != 0) break;
      // Enabling twice changes nothing; disabling forgets the bitmap.
      if (!op.priv) m.dirty.clear();
      m.logging = op.priv;
      if (!op.priv) m.touched.clear();
      break;
    }
    case OpKind::GetDirtyLog: {
      const auto got = vm.get_dirty_log(1);
      if (got.has_value() != (m.live[1] && m.logging)) {
        bad << "get_dirty_log " << (got ? "returned a bitmap" : "failed") << " with logging "
            << (m.logging ? "on" : "off");
        break;
      }
      if (!got) break;
      // (c) Every page written since the last get (or since enabling) is
      // reported, and nothing the guest did not touch: KVM's make_spte()
      // logs a read fault too, since it installs a writable SPTE.
      std::set<uint64_t> reported;
      for (size_t w = 0; w < got->size(); w++)
        for (int b = 0; b < 64; b++)
          if ((*got)[w] >> b & 1) reported.insert(w * 64 + b);
      for (uint64_t p : m.dirty)
        if (!reported.count(p)) bad << "dirty log: page " << p << " written but not reported; ";
      for (uint64_t p : reported)
        if (!m.touched.count(p)) bad << "dirty log: page " << p << " reported but never touched; ";
      m.dirty.clear();
      m.touched.clear();
      break;
    }
    case OpKind::DeleteSlot1: {
      const int want = m.live[1] ? 0 : -EINVAL;
      const int got = vm.delete_memslot(1);
      if (got != want) bad << "delete_memslot returned " << got << ", expected " << want;
      if (got != 0) break;
      const uint64_t b = kSlots[1].base().v;
      m.drop_shared(b, b + kSlots[1].npages());
      m.drop_private(b, b + kSlots[1].npages());
      m.live[1] = false;
      m.logging = false;
      m.dirty.clear();
      m.touched.clear();
      break;
    }
    case OpKind::ReaddSlot1: {
      if (m.live[1]) break;
      const int got = vm.add_memslot(kSlots[1].id, kSlots[1].gpa, kSlots[1].size, kSlots[1].flags);
      if (got != 0) bad << "add_memslot returned " << got;
      if (got != 0) break;
      m.live[1] = true;
      std::fill(m.priv_attr[1].begin(), m.priv_attr[1].end(), 0);
      break;
    }
    case OpKind::Finalize: {
      const int want = m.finalized ? -EINVAL : 0;
      const int got = vm.finalize();
      if (got != want) bad << "finalize returned " << got << ", expected " << want;
      m.finalized = m.finalized || got == 0;
      break;
    }
  }
  return bad.str();
}

void run_case(const Variant& v, const TdBuild& build, const std::vector<Op>& ops) {
  VmConfig cfg;
  cfg.type = VmType::Td;
  cfg.ept_levels = v.ept_levels;
  cfg.pool_pages = kPoolPages;
  cfg.nr_vcpus = kVcpus;
  cfg.design = v.design;
  cfg.huge_pages = v.huge_pages;
  cfg.external_spt_policy = v.policy;
  cfg.split_alloc = v.split_alloc;
  Vm vm(cfg);
  RC_ASSERT(vm.create() == 0);
  if (v.resched_interval) vm.mmu().set_resched_interval(v.resched_interval);
  for (const SlotGeom& g : kSlots) RC_ASSERT(vm.add_memslot(g.id, g.gpa, g.size, g.flags) == 0);
  // Declared after the VM so it detaches before the VM goes away.
  Checker ck(vm);
  Model m;

  auto verify = [&](const std::string& after) {
    std::vector<std::string> err = compare(vm, m);
    if (ck.check(after))
      for (const Violation& x : ck.violations()) err.push_back("checker: " + x.invariant + ": " + x.detail);
    if (err.empty()) return;
    std::string msg = "after " + after + ":";
    for (size_t i = 0; i < err.size() && i < 8; i++) msg += "\n  " + err[i];
    RC_FAIL(msg);
  };

  if (build.init_pages) {
    const uint64_t first = std::min<uint64_t>(build.init_page, kSlots[0].npages() - build.init_pages);
    RC_ASSERT(vm.init_mem_region(kSlots[0].gpa + (first << kPageShift), build.init_pages) == 0);
    // PAGE.ADD makes the pages private and maps them, already accepted.
    for (uint64_t i = first; i < first + build.init_pages; i++) {
      m.priv_attr[0][i] = 1;
      m.private_mapped[kSlots[0].base().v + i] = true;
    }
    verify("init_mem_region");
  }
  if (build.finalize_first) {
    RC_ASSERT(vm.finalize() == 0);
    m.finalized = true;
    verify("finalize");
  }
  if (build.slot0_private && build.finalize_first) {
    RC_ASSERT(vm.set_memory_attributes(kSlots[0].gpa, kSlots[0].size, true) == 0);
    m.drop_shared(kSlots[0].base().v, kSlots[0].base().v + kSlots[0].npages());
    std::fill(m.priv_attr[0].begin(), m.priv_attr[0].end(), 1);
    verify("slot0 private");
  }
  if (build.log_slot1) {
    RC_ASSERT(vm.set_dirty_logging(1, true) == 0);
    m.logging = true;
    verify("dirty logging slot1 on");
  }

  for (size_t i = 0; i < ops.size(); i++) {
    std::ostringstream name;
    name << "op " << i << " (" << ops[i] << ")";
    const std::string bad = step(vm, m, ops[i]);
    if (!bad.empty()) RC_FAIL(name.str() + ": " + bad);
    verify(name.str());
  }

  // How often the huge-page paths ran (printed by RapidCheck per property).
  if (v.huge_pages) {
    RC_CLASSIFY(vm.mmu().stats().pages(1) > 0, "2M private mapping left");
    RC_CLASSIFY(vm.tdx()->stats().demotes > 0, "demoted");
  }
  vm.destroy();
  if (ck.check_end_of_life()) {
    std::string msg = "at end of life:";
    for (const Violation& x : ck.violations()) msg += "\n  " + x.invariant + ": " + x.detail;
    RC_FAIL(msg);
  }
  RC_ASSERT(vm.pool().in_use() == 0u);
  RC_ASSERT(vm.pool().violations() == 0u);
}

RC_GTEST_PROP(VmProperty, MatchesReferenceModel, ()) {
  const TdBuild build = *full_range(gen_build());
  const std::vector<Op> ops = *gen_ops();
  run_case(Variant{}, build, ops);
}

// Yielding every third step of a long walk makes every zap and
// write-protect restart from the root mid-range.
RC_GTEST_PROP(VmProperty, MatchesReferenceModelWithForcedYields, ()) {
  const TdBuild build = *full_range(gen_build());
  const std::vector<Op> ops = *gen_ops();
  run_case(Variant{.resched_interval = 3}, build, ops);
}

// 5-level EPT: another root level and the shared bit at GPA bit 51.
RC_GTEST_PROP(VmProperty, MatchesReferenceModelWith5LevelEpt, ()) {
  const TdBuild build = *full_range(gen_build());
  const std::vector<Op> ops = *gen_ops();
  run_case(Variant{.ept_levels = 5}, build, ops);
}

}  // namespace
}  // namespace mirrormmu::test

namespace mirrormmu::test {
namespace {

// Every design that can split private huge pages, with 2M private mappings:
// the guest's 4K accepts inside them and conversions that cut them demote.
RC_GTEST_PROP(VmProperty, CentralizedWithPrivateHugePages, ()) {
  run_case(Variant{.design = "centralized-rfc-fixed", .huge_pages = true}, *full_range(gen_build()), *gen_ops());
}

RC_GTEST_PROP(VmProperty, SplitHookWithPrivateHugePages, ()) {
  run_case(Variant{.design = "split-hook", .huge_pages = true}, *full_range(gen_build()), *gen_ops());
}

RC_GTEST_PROP(VmProperty, SingleHookWithPrivateHugePages, ()) {
  run_case(Variant{.design = "single-hook", .huge_pages = true}, *full_range(gen_build()), *gen_ops());
}

// The ownership variants: S-EPT pages from the TDX-side pool, and split
// tables that are not pre-filled (the split must write every entry).
RC_GTEST_PROP(VmProperty, TdxPoolAndUnfilledSplitTables, ()) {
  run_case(Variant{.design = "centralized-rfc-fixed",
                   .huge_pages = true,
                   .policy = ExternalSptPolicy::TdxPool,
                   .split_alloc = SplitAlloc::Unfilled},
           *full_range(gen_build()), *gen_ops());
}

RC_GTEST_PROP(VmProperty, BaselineWithTheTdxPool, ()) {
  run_case(Variant{.policy = ExternalSptPolicy::TdxPool}, *full_range(gen_build()), *gen_ops());
}

}  // namespace
}  // namespace mirrormmu::test
