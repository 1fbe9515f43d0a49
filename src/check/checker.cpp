// SPDX-License-Identifier: MIT
#include "check/checker.h"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "check/raw_walker.h"
#include "spte/spte.h"
#include "sync/det_engine.h"
#include "sync/rcu.h"

namespace mirrormmu {

namespace {
PageOwner expected_owner(tdx::PamtType t) {
  switch (t) {
    case tdx::PamtType::Reg: return PageOwner::GuestPrivate;
    case tdx::PamtType::Ept: return PageOwner::SeptPage;
    case tdx::PamtType::Tdr:
    case tdx::PamtType::Tdcx:
    case tdx::PamtType::Tdvpr: return PageOwner::TdControl;
    case tdx::PamtType::Pamt: return PageOwner::Pamt;
    case tdx::PamtType::Nda: break;
  }
  return PageOwner::Free;
}
}  // namespace

// Buffers reused from one check to the next.
struct Checker::Scratch {
  RawTree tree;
  std::vector<RawLeaf> mirror_leaves;
  std::vector<RawTable> mirror_tables;
  // An entry of either side: the S-EPT's as the module shows it, the
  // mirror's translated to S-EPT levels and states.
  using Item = tdx::TdxModule::EntryView;
  std::vector<Item> mirror, sept;
};

const char* check_mode_name(CheckMode m) {
  switch (m) {
    case CheckMode::Full: return "full";
    case CheckMode::Incremental: return "incremental";
    case CheckMode::Final: return "final";
  }
  return "?";
}

Checker::Checker(Vm& vm, CheckerOptions opts) : vm_(vm), opts_(opts), scratch_(std::make_unique<Scratch>()) {
  if (incremental()) vm_.pool().log_departures(PageOwner::GuestPrivate);
  vm_.mmu().set_observer(this);
  vm_.bugs().set_observer(this);
  if (auto* m = vm_.module()) m->set_observer(this);
  for (size_t i = 0; i < kSiteCount; i++) bug_hits_seen_[i] = vm_.bugs().hits(static_cast<Site>(i));
}

Checker::~Checker() {
  if (incremental()) vm_.pool().log_departures(PageOwner::kCount);
  vm_.mmu().set_observer(nullptr);
  vm_.bugs().set_observer(nullptr);
  if (auto* m = vm_.module()) m->set_observer(nullptr);
}

void Checker::on_spte_changed(const SpteChange& c) {
  const uint64_t mmio = vm_.mmu().config().mmio_value;
  // KVM never promotes a private mapping: the S-EPT would need all 512
  // leaves uniform and a break-before-make that the freeze cannot give.
  if (c.mirror && spte::is_nonleaf(c.old_spte, c.level) && spte::is_leaf(c.new_spte, c.level)) [[unlikely]] {
    std::lock_guard g(promotion_mu_);
    fail("mirror_promotion", fmt::format("gfn {:#x} level {}: table replaced by a huge leaf", c.gfn.v,
                                         level_name(c.level)));
  }
  transitions_.add({spte::kind_of(c.old_spte, c.level, mmio), spte::kind_of(c.new_spte, c.level, mmio),
                    c.shared, c.mirror});
  if (incremental())
    touched_.add(Gfn{c.gfn.v & ~vm_.mmu().config().gfn_direct_bits}, pages_per_hpage(c.level));
}

void Checker::on_external_hook(HookKind kind, Gfn gfn, PgLevel level, int ret) {
  hooks_.add(static_cast<size_t>(kind));
  if (ret) hook_failures_[static_cast<size_t>(kind)].fetch_add(1, std::memory_order_relaxed);
}

size_t Checker::row_of(const SpteChange& c) const {
  const uint64_t mmio = vm_.mmu().config().mmio_value;
  return TransitionCounts::index({spte::kind_of(c.old_spte, c.level, mmio), spte::kind_of(c.new_spte, c.level, mmio),
                                  c.shared, c.mirror});
}

void Checker::on_spte_change_result(const SpteChange& c, int ret) {
  const size_t row = row_of(c);
  attempts_.add(row);
  if (ret) [[unlikely]] {
    std::lock_guard g(rows_mu_);
    refused_[row][ret]++;
  }
}

// A site is charged to the change its thread is handling; an RCU callback the
// engine runs at a scheduling point inside a change is not part of it.
void Checker::on_bug_site(Site s, bool vm_bugged_now) {
  size_t row = kRowOutside;
  const auto* engine = sync::DetEngine::active();
  if (engine && engine->in_rcu_callback())
    row = kRowRcuCallback;
  else if (const SpteChange* c = TdpMmu::current_change())
    row = row_of(*c);
  std::lock_guard g(rows_mu_);
  row_sites_[row][s]++;
}

TransitionRows Checker::transition_rows() const {
  TransitionRows rows(kTransitionRows);
  for (size_t i = 0; i < TransitionCounts::kClasses; i++) rows[i].attempts = attempts_.sum(i);
  std::lock_guard g(rows_mu_);
  for (const auto& [row, m] : refused_) rows[row].refused = m;
  for (const auto& [row, m] : row_sites_) rows[row].sites = m;
  return rows;
}

std::string Checker::describe() const {
  std::string out;
  for (const auto& v : violations_) out += fmt::format("{}: {} (after {})\n", v.invariant, v.detail, v.op);
  return out;
}

void Checker::fail(std::string invariant, std::string detail) {
  if (violations_.size() >= opts_.max_violations) return;
  violations_.push_back({std::move(invariant), std::move(detail), op_index_, op_});
}

// One pass over some ranges of the guest (all of it for a full check); a
// class so each invariant is a small method.
class Checker::Pass {
 public:
  explicit Pass(Checker& c)
      : c_(c), vm_(c.vm_), pool_(vm_.pool()), sc_(*c.scratch_),
        direct_bits_(vm_.mmu().config().gfn_direct_bits), mmio_(vm_.mmu().config().mmio_value) {}

  // `ranges`: un-aliased gfns, sorted and disjoint. The page stats are held
  // against the counts of every region a pass has walked, the last time it
  // walked it; a full pass walks them all.
  void run(const std::vector<TouchedRange>& ranges) {
    vm_.mmu().for_each_root([&](MmuPage* root) { roots_.push_back({root}); });
    for (RootAcc& r : roots_) check_root(*r.root);
    // At most 64M at a time: the lists a range fills follow its size, and
    // an operation over the whole guest (attributes, a memslot, the full
    // pass) must not hold every leaf of it at once. 64M keeps each list
    // under a few MiB whatever the guest's size.
    const uint64_t chunk = 32 * pages_per_hpage(PgLevel::k2M);
    for (const TouchedRange& r : ranges)
      for (uint64_t g = r.start.v; g < r.end.v;) {
        const uint64_t next = std::min(r.end.v, (g | (chunk - 1)) + 1);
        check_range({Gfn{g}, Gfn{next}});
        if (next <= g) break;
        g = next;
      }
    for (const RootAcc& r : roots_) report_root(r);
    check_stats();
  }

  // A guest page whose lines under the TD's key were never written back
  // must still be the guest's: on the host, a later eviction of one of them
  // would overwrite (or, with integrity, poison) what the host stored there.
  void check_cache_writeback() {
    c_.invariants_checked_++;
    constexpr uint64_t kSlice = uint64_t{1} << 20;
    std::vector<Pfn> dirty;
    for (uint64_t first = 0; first < pool_.size(); first += kSlice) {
      dirty.clear();
      vm_.module()->cache_dirty_in(first, kSlice, &dirty);
      for (const Pfn pfn : dirty) {
        const PageOwner o = pool_.owner(pfn);
        if (o == PageOwner::GuestPrivate) continue;
        if (!c_.cache_reported_.insert(pfn.v).second) continue;
        c_.fail("cache_not_written_back",
                fmt::format("pfn {:#x} went to the host as {} with cache lines of HKID {} never written back "
                            "(no TDH.PHYMEM.PAGE.WBINVD after the REMOVE)",
                            pfn.v, page_owner_name(o), vm_.module()->hkid()));
      }
    }
  }

  // Every frame the TDX module holds is held by the matching host owner.
  // A full scan of the pool, so only at the end of life.
  void check_pamt_owners() {
    c_.invariants_checked_++;
    for (const auto& [pfn, t] : vm_.module()->assigned_frames(pool_.size())) {
      const PageOwner o = pool_.owner(pfn);
      if (o == expected_owner(t)) continue;
      // Freeing a page the TDX module still maps is the risk upstream accepts
      // once the VM is bugged; anything else is a bug.
      if (o == PageOwner::Free && vm_.bugs().bugged()) continue;
      c_.fail("pamt_owner", fmt::format("pfn {:#x}: TDX module has it as {}, host as {}", pfn.v,
                                        tdx::pamt_type_name(t), page_owner_name(o)));
    }
  }

 private:
  struct RootAcc {
    MmuPage* root;
    uint64_t bad = 0, unwritten = 0, mmio = 0;
  };

  void check_root(const MmuPage& root) {
    c_.invariants_checked_ += 5;
    // Only the TD's teardown may invalidate the mirror root: a fast zap
    // that takes it leaves the S-EPT mapping what KVM no longer tracks.
    if (root.is_mirror() && root.role.invalid && !vm_.destroyed())
      c_.fail("mirror_root_invalidated", fmt::format("the mirror root {:#x} was invalidated while the TD lives",
                                                     root.spt_pfn.v));
    if (pool_.owner(root.spt_pfn) != PageOwner::PageTable)
      c_.fail("pfn_owner", fmt::format("root table {:#x} is {}", root.spt_pfn.v,
                                       page_owner_name(pool_.owner(root.spt_pfn))));
  }

  void report_root(const RootAcc& r) {
    const char* kind = r.root->is_mirror() ? "mirror" : "direct";
    if (r.bad) c_.fail("bad_spte", fmt::format("{} entries of unknown form in a {} root", r.bad, kind));
    // A table allocated for a split without pre-filling is reachable with
    // entries nobody wrote: any walker may read them.
    if (r.unwritten) c_.fail("spte_unwritten", fmt::format("{} never-written entries reachable in a {} root",
                                                           r.unwritten, kind));
    if (r.root->is_mirror() && r.mmio) c_.fail("mirror_mmio", fmt::format("{} MMIO SPTEs in the mirror root", r.mmio));
  }

  // Walks come in GPA order, 512 leaves to a region: the last region's
  // count is the next leaf's too, without a look into the map. check_range()
  // erases from the map, so it forgets the last one.
  Checker::RegionCount& count_for(Gfn gfn) {
    const uint64_t region = (gfn.v & ~direct_bits_) / TouchedRanges::kRegionPages;
    if (last_count_ == nullptr || last_region_ != region) {
      last_count_ = &c_.region_counts_[region];
      last_region_ = region;
    }
    return *last_count_;
  }
  // The memslot of the last leaf looked at: the next is most often in it.
  const Memslot* slot_for(Gfn gfn) {
    if (last_slot_ == nullptr || !last_slot_->contains(gfn)) last_slot_ = vm_.find_slot(gfn);
    return last_slot_;
  }

  void check_range(const TouchedRange& r) {
    const uint64_t lo = r.start.v / TouchedRanges::kRegionPages, hi = (r.end.v - 1) / TouchedRanges::kRegionPages + 1;
    auto& counts = c_.region_counts_;
    last_count_ = nullptr;
    for (auto it = counts.lower_bound(lo); it != counts.end() && it->first < hi; it = counts.erase(it)) {
      for (int l = 0; l < kMaxHugeLevel; l++) c_.counted_pages_[l] -= it->second.pages[l];
      c_.counted_tables_ -= it->second.tables;
    }
    sc_.mirror_leaves.clear();
    sc_.mirror_tables.clear();
    for (RootAcc& acc : roots_) {
      const bool mirror = acc.root->is_mirror();
      walk_range(acc, r.start, r.end);
      // A TD's direct root maps the shared alias; an entry below the shared
      // bit there is looked at too (and is wrong, as a leaf in the wrong root).
      if (!mirror && direct_bits_ && r.start.v < direct_bits_)
        walk_range(acc, r.start + direct_bits_, Gfn{std::min(r.end.v, direct_bits_) + direct_bits_});
    }
    if (vm_.is_td() && vm_.module() && !vm_.bugs().bugged()) check_mirror_vs_sept(r);
  }

  void walk_range(RootAcc& acc, Gfn start, Gfn end) {
    const bool mirror = acc.root->is_mirror();
    RawTree& t = sc_.tree;
    raw_walk(pool_, acc.root->spt, acc.root->role.level, mmio_, t, start, end);
    for (const auto& f : t.frozen)
      c_.fail("frozen_reachable", fmt::format("FROZEN_SPTE at gfn {:#x} level {} in a {} root",
                                              f.gfn.v & ~direct_bits_, level_name(f.level),
                                              mirror ? "mirror" : "direct"));
    acc.bad += t.bad_entries;
    acc.unwritten += t.unwritten;
    acc.mmio += t.mmio;
    for (const auto& tb : t.tables) {
      check_table(tb, mirror, direct_bits_);
      count_for(tb.gfn).tables++;
      c_.counted_tables_++;
    }
    for (const auto& lf : t.leaves) {
      check_leaf(lf, mirror, direct_bits_);
      count_for(lf.gfn).pages[lvl(lf.level) - 1]++;
      c_.counted_pages_[lvl(lf.level) - 1]++;
    }
    entries_ += t.tables.size() + t.leaves.size();
    c_.entries_checked_ += t.tables.size() + t.leaves.size();
    if (mirror) {
      sc_.mirror_tables.insert(sc_.mirror_tables.end(), t.tables.begin(), t.tables.end());
      sc_.mirror_leaves.insert(sc_.mirror_leaves.end(), t.leaves.begin(), t.leaves.end());
    }
  }

 public:
  uint64_t entries() const { return entries_; }

 private:
  void check_table(const RawTable& tb, bool mirror, uint64_t direct_bits) {
    const Gfn gfn{tb.gfn.v & ~direct_bits};
    if (!tb.sp) {
      c_.fail("sp_linkage", fmt::format("table {:#x} at gfn {:#x} has no kvm_mmu_page", tb.pfn.v, gfn.v));
      return;
    }
    if (tb.sp->role.level != tb.level || tb.sp->gfn != gfn || tb.sp->is_mirror() != mirror)
      c_.fail("sp_linkage", fmt::format("sp {:#x}: level {} gfn {:#x} mirror {}, linked as level {} gfn {:#x} mirror {}",
                                        tb.pfn.v, level_name(tb.sp->role.level), tb.sp->gfn.v,
                                        tb.sp->is_mirror(), level_name(tb.level), gfn.v, mirror));
    if (pool_.owner(tb.pfn) != PageOwner::PageTable)
      c_.fail("pfn_owner", fmt::format("table {:#x} is {}", tb.pfn.v, page_owner_name(pool_.owner(tb.pfn))));
    if (!mirror) return;
    if (!tb.external_spt.valid()) {
      c_.fail("external_spt", fmt::format("mirror sp at gfn {:#x} level {} has no external_spt", gfn.v,
                                          level_name(tb.level)));
    } else if (pool_.owner(tb.external_spt) != PageOwner::SeptPage) {
      c_.fail("pfn_owner", fmt::format("external_spt {:#x} is {}", tb.external_spt.v,
                                       page_owner_name(pool_.owner(tb.external_spt))));
    }
  }

  void check_leaf(const RawLeaf& lf, bool mirror, uint64_t direct_bits) {
    const Gfn gfn{lf.gfn.v & ~direct_bits};
    if (lvl(lf.level) > kMaxHugeLevel)
      c_.fail("leaf_level", fmt::format("leaf at level {} (gfn {:#x})", level_name(lf.level), gfn.v));
    // Mirror leaves are 4K unless the VM maps private huge pages, and never
    // above 2M (the only size TDX maps huge).
    if (mirror && lf.level > (vm_.config().huge_pages ? PgLevel::k2M : PgLevel::k4K))
      c_.fail("mirror_huge", fmt::format("mirror leaf at level {} (gfn {:#x})", level_name(lf.level), gfn.v));
    const uint64_t span = pages_per_hpage(lf.level);
    for (uint64_t i = 0; i < span; i++) {
      const Gfn g = gfn + i;
      const Pfn pfn = lf.pfn + i;
      const Memslot* s = slot_for(g);
      if (!s) {
        c_.fail("leaf_backing", fmt::format("gfn {:#x} mapped outside every memslot", g.v));
        return;
      }
      // Atomically: a conversion writes it outside mmu_lock, which the checker holds.
      const bool priv = s->peek_private(g);
      const Backing* b = mirror ? s->gmem.get() : s->shared.get();
      if (vm_.is_td() && priv != mirror) {
        c_.fail("leaf_attr", fmt::format("gfn {:#x} is {} but mapped in the {} root", g.v,
                                         priv ? "private" : "shared", mirror ? "mirror" : "direct"));
        return;
      }
      if (!b || b->peek_pfn(g - s->base_gfn) != pfn) {
        c_.fail("leaf_backing", fmt::format("gfn {:#x} maps pfn {:#x}, backing has {:#x}", g.v, pfn.v,
                                            b ? b->peek_pfn(g - s->base_gfn).v : ~0ull));
        return;
      }
      // The host's VMA decides what KVM may map (the MMU notifier enforces
      // it on mprotect/munmap): no writable leaf over read-only memory, no
      // leaf at all over memory unmapped from the VMM.
      if (!mirror) {
        const HostProt hp = b->prot(g - s->base_gfn);
        // MMU-writable counts: fast_page_fault() would make it writable.
        const bool w = spte::is_writable(lf.spte) || spte::is_mmu_writable(lf.spte);
        if (hp == HostProt::None || (hp == HostProt::ReadOnly && w)) {
          c_.fail("host_prot", fmt::format("gfn {:#x} (memslot {}) is mapped {} but the host memory is {}", g.v, s->id,
                                           w ? "writable" : "read-only",
                                           hp == HostProt::None ? "unmapped" : "read-only"));
          return;
        }
      }
      const PageOwner want = mirror ? PageOwner::GuestPrivate : PageOwner::GuestShared;
      if (pool_.owner(pfn) != want) {
        c_.fail("pfn_owner", fmt::format("gfn {:#x} maps pfn {:#x}, which is {}", g.v, pfn.v,
                                         page_owner_name(pool_.owner(pfn))));
        return;
      }
    }
  }

  void check_stats() {
    c_.invariants_checked_ += 2;
    const TdpMmuStats& st = vm_.mmu().stats();
    for (int l = 0; l < kMaxHugeLevel; l++)
      if (st.pages(l) != c_.counted_pages_[l])
        c_.fail("stats_pages", fmt::format("pages_{} is {}, tables hold {}",
                                           level_name(to_level(l + 1)), st.pages(l), c_.counted_pages_[l]));
    if (st.tdp_mmu_pages.load() != c_.counted_tables_)
      c_.fail("stats_tdp_mmu_pages", fmt::format("tdp_mmu_pages is {}, {} tables are linked",
                                                 st.tdp_mmu_pages.load(), c_.counted_tables_));
  }

  // Mirror and S-EPT agree: same leaves (gfn, level, pfn, an unblocked
  // state) and every mirror table linked by the S-EPT page KVM donated. Both
  // sides come out of pre-order walks in GPA order, so this is one merge;
  // they are sorted first only if something is out of order.
  using Item = Scratch::Item;
  static bool item_less(const Item& a, const Item& b) {
    return a.gpa != b.gpa ? a.gpa < b.gpa : a.tdx_level > b.tdx_level;
  }

  void check_mirror_vs_sept(const TouchedRange& r) {
    c_.invariants_checked_ += 2;
    std::vector<Item>& mirror = sc_.mirror;
    std::vector<Item>& sept = sc_.sept;
    mirror.clear();
    sept.clear();
    // The tables and the leaves each come in pre-order, i.e. sorted by key:
    // merged straight into one list.
    const auto& tabs = sc_.mirror_tables;
    const auto& leafs = sc_.mirror_leaves;
    mirror.reserve(tabs.size() + leafs.size());
    auto table_item = [](const RawTable& tb) {
      return Item{tb.gfn.gpa(), lvl(tb.level), tdx::SeptState::NlMapped, tb.external_spt};
    };
    auto leaf_item = [](const RawLeaf& lf) { return Item{lf.gfn.gpa(), lvl(lf.level) - 1, tdx::SeptState::Mapped, lf.pfn}; };
    for (size_t t = 0, l = 0; t < tabs.size() || l < leafs.size();) {
      if (l == leafs.size() || (t < tabs.size() && !item_less(leaf_item(leafs[l]), table_item(tabs[t]))))
        mirror.push_back(table_item(tabs[t++]));
      else
        mirror.push_back(leaf_item(leafs[l++]));
    }
    if (!std::is_sorted(mirror.begin(), mirror.end(), item_less)) std::sort(mirror.begin(), mirror.end(), item_less);
    sept.reserve(mirror.size());
    const uint64_t end_gpa = r.end.v >> (64 - kPageShift) ? ~0ull : r.end.gpa();
    vm_.module()->entries_in(r.start.gpa(), end_gpa, 0, sept);
    if (!std::is_sorted(sept.begin(), sept.end(), item_less)) std::sort(sept.begin(), sept.end(), item_less);

    size_t i = 0, j = 0;
    while (i < mirror.size() || j < sept.size()) {
      if (j == sept.size() || (i < mirror.size() && item_less(mirror[i], sept[j]))) {
        const Item& m = mirror[i++];
        const bool table = m.state == tdx::SeptState::NlMapped;
        c_.fail(table ? "mirror_table_unpropagated" : "mirror_leaf_unpropagated",
                fmt::format("mirror {} at gpa {:#x} (S-EPT level {}) has no S-EPT entry", table ? "table" : "leaf",
                            m.gpa, m.tdx_level));
      } else if (i == mirror.size() || item_less(sept[j], mirror[i])) {
        const Item& e = sept[j++];
        const bool table = tdx::is_nonleaf_state(e.state);
        c_.fail(table ? "sept_table_unmirrored" : "sept_leaf_unmirrored",
                fmt::format("S-EPT {} at gpa {:#x} level {} ({}) has no mirror counterpart",
                            table ? "table" : "leaf", e.gpa, e.tdx_level, tdx::sept_state_name(e.state)));
      } else {
        const Item& m = mirror[i++];
        const Item& e = sept[j++];
        const bool table = m.state == tdx::SeptState::NlMapped;
        if (table && (e.state != tdx::SeptState::NlMapped || e.pfn != m.pfn))
          c_.fail("mirror_sept_table", fmt::format("gpa {:#x} level {}: external_spt {:#x}, S-EPT {:#x} {}", m.gpa,
                                                   m.tdx_level, m.pfn.v, e.pfn.v, tdx::sept_state_name(e.state)));
        if (!table && (!tdx::is_leaf_state(e.state) || tdx::is_blocked_state(e.state) || e.pfn != m.pfn))
          c_.fail("mirror_sept_leaf", fmt::format("gpa {:#x} level {}: mirror pfn {:#x}, S-EPT pfn {:#x} {}", m.gpa,
                                                  m.tdx_level, m.pfn.v, e.pfn.v, tdx::sept_state_name(e.state)));
      }
    }
  }

  Checker& c_;
  Vm& vm_;
  PfnPool& pool_;
  Scratch& sc_;
  const uint64_t direct_bits_;
  const uint64_t mmio_;
  std::vector<RootAcc> roots_;
  uint64_t entries_ = 0;
  Checker::RegionCount* last_count_ = nullptr;
  uint64_t last_region_ = 0;
  const Memslot* last_slot_ = nullptr;
};

void Checker::report_pool_violations() {
  const auto log = vm_.pool().violation_log();
  for (size_t i = pool_violations_seen_; i < log.size(); i++) fail("pool", log[i]);
  pool_violations_seen_ = log.size();
}

size_t Checker::check(std::string_view after_op) {
  switch (opts_.mode) {
    case CheckMode::Full: return run_check(after_op, true);
    case CheckMode::Final: return run_check(after_op, false);
    case CheckMode::Incremental: break;
  }
  // A full pass once the incremental passes since the last one have looked
  // at more entries than it did: full passes then never cost more than the
  // incremental checks between them. Counted in SPTE changes instead, a TD
  // (three per page: mirror, S-EPT, accept) paid for a full pass each time
  // its guest grew by a third, nearly five full-pass visits per page.
  checks_since_full_++;
  const bool due = !had_full_ || incremental_since_full_ > std::max<uint64_t>(entries_at_full_, 4096) ||
                   (opts_.full_every && checks_since_full_ >= opts_.full_every);
  return run_check(after_op, due);
}

size_t Checker::check_full(std::string_view after_op) { return run_check(after_op, true); }

size_t Checker::run_check(std::string_view after_op, bool full) {
  op_index_++;
  op_ = after_op;
  checks_run_++;
  const size_t before = violations_.size();

  sync::RcuThread rcu_thread;
  if (full || opts_.mode == CheckMode::Incremental) {
    // A stable view: no fault can change the tables while we read them.
    sync::WriteGuard lock(vm_.mmu().mmu_lock());
    sync::RcuReadGuard rcu;
    // Taken under the lock: a change recorded after this is checked next time.
    std::vector<TouchedRange> ranges = touched_.take();
    // A change high in the tree (a 512G table linked) names its whole span;
    // only the parts of it that hold anything are walked.
    constexpr uint64_t kWideRange = 64 * pages_per_hpage(PgLevel::k1G);
    if (!full && std::any_of(ranges.begin(), ranges.end(),
                             [&](const TouchedRange& r) { return r.end.v - r.start.v > kWideRange; })) {
      const std::vector<TouchedRange> present = all_regions();
      std::vector<TouchedRange> narrowed;
      for (const TouchedRange& r : ranges) {
        if (r.end.v - r.start.v <= kWideRange) {
          narrowed.push_back(r);
          continue;
        }
        for (const TouchedRange& p : present)
          if (p.start < r.end && r.start < p.end) narrowed.push_back({std::max(p.start, r.start), std::min(p.end, r.end)});
      }
      std::sort(narrowed.begin(), narrowed.end(), [](const TouchedRange& a, const TouchedRange& b) { return a.start < b.start; });
      ranges.clear();
      for (const TouchedRange& r : narrowed) {
        if (!ranges.empty() && r.start <= ranges.back().end) ranges.back().end = std::max(ranges.back().end, r.end);
        else ranges.push_back(r);
      }
    }
    if (full) {
      ranges = all_regions();
      region_counts_.clear();
      std::fill(std::begin(counted_pages_), std::end(counted_pages_), 0);
      counted_tables_ = 0;
    }
    Pass pass(*this);
    pass.run(ranges);
    if (full) {
      full_checks_++;
      had_full_ = true;
      entries_at_full_ = pass.entries();
      incremental_since_full_ = checks_since_full_ = 0;
    } else {
      incremental_since_full_ += pass.entries();
    }
    if (vm_.is_td() && vm_.module() && !vm_.bugs().bugged()) {
      // More frames left the guest than the pool lists: every cache-dirty
      // frame is looked at instead.
      if (!check_departed_frames() || full) pass.check_cache_writeback();
    }
  }

  invariants_checked_++;
  report_pool_violations();
  report_hw_violations();
  report_new_bug_sites();
  return violations_.size() - before;
}

// Every 1G region of the guest that holds anything, in any root or in the
// S-EPT, un-aliased and in order.
std::vector<TouchedRange> Checker::all_regions() const {
  const uint64_t region = pages_per_hpage(PgLevel::k1G);
  const uint64_t direct_bits = vm_.mmu().config().gfn_direct_bits;
  std::vector<Gfn> bases;
  vm_.mmu().for_each_root([&](MmuPage* root) { raw_regions(vm_.pool(), root->spt, root->role.level, PgLevel::k1G, bases); });
  if (const tdx::TdxModule* m = vm_.module())
    m->for_each_entry_in(0, ~0ull, 2, [&](const tdx::TdxModule::EntryView& e) { bases.push_back(Gfn::from_gpa(e.gpa)); });
  std::vector<TouchedRange> out;
  for (Gfn g : bases) {
    const uint64_t b = (g.v & ~direct_bits) & ~(region - 1);
    out.push_back({Gfn{b}, Gfn{b + region}});
  }
  std::sort(out.begin(), out.end(), [](const TouchedRange& a, const TouchedRange& b) { return a.start < b.start; });
  out.erase(std::unique(out.begin(), out.end(), [](const TouchedRange& a, const TouchedRange& b) { return a.start == b.start; }),
            out.end());
  return out;
}

// The incremental form of check_cache_writeback(): only frames that left the
// guest since the last check can have gone to the host dirty.
bool Checker::check_departed_frames() {
  invariants_checked_++;
  const tdx::TdxModule* m = vm_.module();
  const PfnPool::Departures departed = vm_.pool().take_departures();
  if (departed.overflowed) return false;
  for (Pfn pfn : departed.frames) {
    const PageOwner o = vm_.pool().owner(pfn);
    if (o == PageOwner::GuestPrivate || !m->cache_dirty(pfn) || !cache_reported_.insert(pfn.v).second) continue;
    fail("cache_not_written_back",
         fmt::format("pfn {:#x} went to the host as {} with cache lines of HKID {} never written back "
                     "(no TDH.PHYMEM.PAGE.WBINVD after the REMOVE)",
                     pfn.v, page_owner_name(o), m->hkid()));
  }
  return true;
}

void Checker::on_seamcall(tdx::Leaf leaf, uint64_t gpa, int tdx_level, tdx::Status) {
  if (!incremental()) return;
  switch (leaf) {
    case tdx::Leaf::MEM_SEPT_ADD:
    case tdx::Leaf::MEM_PAGE_ADD:
    case tdx::Leaf::MEM_PAGE_AUG:
    case tdx::Leaf::MEM_RANGE_BLOCK:
    case tdx::Leaf::MEM_RANGE_UNBLOCK:
    case tdx::Leaf::MEM_PAGE_REMOVE:
    case tdx::Leaf::MEM_SEPT_REMOVE:
    case tdx::Leaf::MEM_PAGE_DEMOTE:
    case tdx::Leaf::MEM_PAGE_PROMOTE:
    case tdx::Leaf::TDG_MEM_PAGE_ACCEPT:
      if (tdx_level >= 0 && tdx_level <= 4)
        touched_.add(Gfn::from_gpa(gpa), 1ull << (kLevelBits * tdx_level));
      break;
    default: break;
  }
}

void Checker::on_gfn_range_changed(Gfn start, uint64_t npages) {
  if (incremental()) touched_.add(Gfn{start.v & ~vm_.mmu().config().gfn_direct_bits}, npages);
}

void Checker::report_hw_violations() {
  invariants_checked_ += 3;
  // Each is "invariant: detail", the first the hardware saw.
  const auto report = [&](const std::string& v, bool& done) {
    if (done || v.empty()) return;
    done = true;
    const size_t colon = v.find(':');
    fail(v.substr(0, colon), colon == std::string::npos ? v : v.substr(colon + 2));
  };
  report(vm_.hw().violation(), hw_reported_);
  report(vm_.vcpu_mutex_violation(), vcpu_mutex_reported_);
  if (const tdx::TdxModule* m = vm_.module()) report(m->tlb_violation(), private_tlb_reported_);
}

// A site that fired since the last check is a failure of the step that was
// running, wherever it fired: an operation, a vCPU thread, teardown, an RCU
// callback. A verdict that ignored one would say OK about a kernel that
// WARNs.
void Checker::report_new_bug_sites() {
  invariants_checked_++;
  for (size_t i = 0; i < kSiteCount; i++) {
    const Site s = static_cast<Site>(i);
    const uint64_t h = vm_.bugs().hits(s);
    if (opts_.bug_sites_are_failures && h != bug_hits_seen_[i])
      fail("bug_site", fmt::format("{} {} ({}) hit {} time(s) during {}", bug_kind_name(site_info(s).kind),
                                   site_info(s).id, site_info(s).text, h - bug_hits_seen_[i], op_));
    bug_hits_seen_[i] = h;
  }
}

size_t Checker::check_end_of_life() {
  op_index_++;
  op_ = "teardown";
  checks_run_++;
  const size_t before = violations_.size();
  PfnPool& pool = vm_.pool();
  invariants_checked_ += 3;
  if (vm_.mmu().stats().tdp_mmu_pages.load() != 0)
    fail("teardown", fmt::format("tdp_mmu_pages is {}", vm_.mmu().stats().tdp_mmu_pages.load()));
  size_t roots = 0;
  vm_.mmu().for_each_root([&](MmuPage*) { roots++; });
  if (roots) fail("teardown", fmt::format("{} roots left", roots));
  pages_leaked_ = pages_leaked_on_purpose_ = 0;
  for (uint64_t i = 0; i < pool.size(); i++) {
    const Pfn pfn{i};
    const PageOwner o = pool.owner(pfn);
    if (o == PageOwner::Free) continue;
    // Kept on purpose: the TDX module still owns it (a failed reclaim).
    if (vm_.module() && vm_.module()->pamt_type(pfn) != tdx::PamtType::Nda) {
      pages_leaked_on_purpose_++;
      continue;
    }
    pages_leaked_++;
    if (pages_leaked_ <= 8) fail("leak", fmt::format("pfn {:#x} still {} after teardown", i, page_owner_name(o)));
  }
  // The module keeps pages only after a reclaim failed (which WARNs without
  // bugging the VM), or on a bug path.
  if (pages_leaked_on_purpose_ && !vm_.bugs().bugged() && !vm_.bugs().hits(Site::tdh_phymem_page_reclaim))
    fail("leak", fmt::format("{} pages kept by the TDX module although the VM never bugged",
                             pages_leaked_on_purpose_));
  if (vm_.module()) Pass(*this).check_pamt_owners();
  report_pool_violations();
  report_hw_violations();
  report_new_bug_sites();
  return violations_.size() - before;
}

}  // namespace mirrormmu
