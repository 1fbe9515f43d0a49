// SPDX-License-Identifier: MIT
#include "tdx/sept_tree.h"

#include <new>

#include "base/block_slab.h"

namespace mirrormmu::tdx {

namespace sept {

namespace {
constexpr uint64_t kRwx = 0x7;
constexpr uint64_t kMemTypeWb = 6ull << 3;
constexpr uint64_t kPageSizeBit = 1ull << 7;
constexpr uint64_t kSuppressVe = 1ull << 63;
}  // namespace

uint64_t arch_entry(Word e, int level) {
  const SeptState s = state_of(e);
  const uint64_t hpa = s == SeptState::Free ? 0 : pfn_of(e).hpa();
  const uint64_t ps = level > 0 ? kPageSizeBit : 0;
  switch (s) {
    case SeptState::Free: return kSuppressVe;
    case SeptState::NlMapped: return kRwx;
    case SeptState::NlBlocked: return 0;
    case SeptState::Mapped: return hpa | kRwx | kMemTypeWb | ps;
    case SeptState::Blocked:
    case SeptState::Pending:
    case SeptState::PendingBlocked: return hpa | kMemTypeWb | ps;
  }
  return 0;
}

uint64_t level_state(Word e, int level) {
  return (static_cast<uint64_t>(level) & 0x7) | (uint64_t{sept_state_public_code(state_of(e))} << 8);
}

}  // namespace sept

namespace {
std::atomic<uint64_t> g_path_gens{1};

// The calling thread's last walk to a 4K entry that reached it.
struct WalkCache {
  uint64_t gen = 0;  // 0: none (generations start at 1)
  uint64_t region = 0;
  SeptTable* table = nullptr;
};
thread_local WalkCache t_walk_cache;

constexpr int kRegionShift = sept::level_shift(1);
}  // namespace

SeptTree::SeptTree(int sept_levels)
    : gen_(g_path_gens.fetch_add(1, std::memory_order_relaxed)), levels_(sept_levels) {}

void SeptTree::paths_changed() const {
  if (flaw_ == CacheFlaw::StaleWalkCache) [[unlikely]]
    return;
  gen_.store(g_path_gens.fetch_add(1, std::memory_order_relaxed), std::memory_order_relaxed);
}

namespace {
BlockSlab& table_slab() {
  // Never destroyed: a block may be freed by another static object at exit.
  static BlockSlab& s = *new BlockSlab(sizeof(SeptTable), alignof(SeptTable));
  return s;
}
}  // namespace

void* SeptTable::operator new(size_t size) {
  if (size != sizeof(SeptTable)) throw std::bad_alloc();
  if (void* p = table_slab().alloc()) return p;
  throw std::bad_alloc();
}

void SeptTable::operator delete(void* p) { table_slab().free(p); }

void SeptTree::create_root(Pfn pfn) {
  root_ = pfn;
  add_table(pfn, root_level());
  paths_changed();
}

SeptTable& SeptTree::add_table(Pfn pfn, int level) {
  auto t = std::make_unique<SeptTable>();
  t->level = level;
  t->pfn = pfn;
  t->tree = this;
  if (level > 0) t->child = std::make_unique<std::atomic<SeptTable*>[]>(kSptePerPage);
  SeptTable& ref = *t;
  auto& slot = tables_[pfn.v];
  // Replacing a table (a frame added twice) drops the old one properly.
  if (slot) remove_table(pfn);
  tables_[pfn.v] = std::move(t);
  if (pfn == root_) root_table_ = &ref;
  // A new table is on no path until an entry is made to point at it (one
  // put over another went through remove_table).
  return ref;
}

SeptTable* SeptTree::find(Pfn pfn) const {
  auto it = tables_.find(pfn.v);
  return it == tables_.end() ? nullptr : it->second.get();
}

void SeptTree::remove_table(Pfn pfn) {
  auto it = tables_.find(pfn.v);
  if (it == tables_.end()) return;
  SeptTable& t = *it->second;
  if (&t == root_table_) root_table_ = nullptr;
  paths_changed();
  if (flaw_ == CacheFlaw::KeepOnRemove) [[unlikely]] {
    parked_.push_back(std::move(it->second));
    tables_.erase(it);
    return;
  }
  // No walk runs now (the caller holds the model's lock exclusively): the
  // pointers to and from this table can go with plain order.
  if (auto* slot = t.cached_in.load(std::memory_order_relaxed)) slot->store(nullptr, std::memory_order_relaxed);
  if (t.child)
    for (size_t i = 0; i < kSptePerPage; i++)
      if (SeptTable* c = t.child[i].load(std::memory_order_relaxed)) c->cached_in.store(nullptr, std::memory_order_relaxed);
  tables_.erase(it);
}

SeptTable* SeptTree::child_of(const SeptTable& t, int index, sept::Word e) const {
  const Pfn want = sept::pfn_of(e);
  std::atomic<SeptTable*>& slot = t.child[static_cast<size_t>(index)];
  SeptTable* c = slot.load(std::memory_order_acquire);
  if (c != nullptr && (c->pfn == want || flaw_ == CacheFlaw::TrustCache)) [[likely]]
    return c;
  c = find(want);
  if (c != nullptr) {
    // Walks side by side may both get here; they store the same pointers. A
    // table cached in one slot is moved to the new one (an entry re-pointed
    // at it after a promote or a demote of its neighbourhood).
    if (auto* old = c->cached_in.exchange(&slot, std::memory_order_acq_rel); old != nullptr && old != &slot) {
      SeptTable* expected = c;
      old->compare_exchange_strong(expected, nullptr, std::memory_order_acq_rel);
    }
    slot.store(c, std::memory_order_release);
  }
  return c;
}

SeptWalk SeptTree::walk(uint64_t gpa, int level) const {
  SeptWalk w;
  const uint64_t gen = gen_.load(std::memory_order_relaxed);
  WalkCache& cache = t_walk_cache;
  if (level == 0 && cache.gen == gen && cache.region == gpa >> kRegionShift) {
    w.table = cache.table;
    w.index = sept::entry_index(gpa, 0);
    w.reached = true;
    return w;
  }
  SeptTable* t = root_table_;
  if (t == nullptr) {
    w.level = root_level();
    return w;
  }
  for (int l = root_level();; --l) {
    w.table = t;
    w.level = static_cast<int16_t>(l);
    w.index = sept::entry_index(gpa, l);
    if (l == level) {
      w.reached = true;
      if (l == 0) cache = {gen, gpa >> kRegionShift, t};
      return w;
    }
    const sept::Word e = w.value();
    if (sept::state_of(e) != SeptState::NlMapped) return w;
    SeptTable* child = child_of(*t, w.index, e);
    if (child == nullptr) return w;
    t = child;
  }
}

void SeptTree::for_each(const Visitor& fn) const { for_each_in(0, ~0ull, 0, fn); }

}  // namespace mirrormmu::tdx
