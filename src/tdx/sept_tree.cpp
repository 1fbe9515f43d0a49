// SPDX-License-Identifier: MIT
#include "tdx/sept_tree.h"

namespace mirrormmu::tdx {

namespace sept {

namespace {
constexpr uint64_t kRwx = 0x7;
constexpr uint64_t kMemTypeWb = 6ull << 3;
constexpr uint64_t kPageSizeBit = 1ull << 7;
constexpr uint64_t kSuppressVe = 1ull << 63;
}  // namespace

uint64_t arch_entry(uint64_t e, int level) {
  const SeptState s = state_of(e);
  const uint64_t hpa = e & ~(kPageSize - 1);
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

uint64_t level_state(uint64_t e, int level) {
  return (static_cast<uint64_t>(level) & 0x7) | (uint64_t{sept_state_public_code(state_of(e))} << 8);
}

}  // namespace sept

SeptTree::SeptTree(int sept_levels) : levels_(sept_levels) {}

void SeptTree::create_root(Pfn pfn) {
  root_ = pfn;
  add_table(pfn, root_level());
}

SeptTable& SeptTree::add_table(Pfn pfn, int level) {
  auto t = std::make_unique<SeptTable>();
  t->level = level;
  SeptTable& ref = *t;
  tables_[pfn.v] = std::move(t);
  return ref;
}

SeptTable* SeptTree::find(Pfn pfn) const {
  auto it = tables_.find(pfn.v);
  return it == tables_.end() ? nullptr : it->second.get();
}

void SeptTree::remove_table(Pfn pfn) { tables_.erase(pfn.v); }

SeptWalk SeptTree::walk(uint64_t gpa, int level) const {
  SeptWalk w;
  SeptTable* t = root_.valid() ? find(root_) : nullptr;
  if (t == nullptr) {
    w.level = root_level();
    return w;
  }
  for (int l = root_level();; --l) {
    w.table = t;
    w.level = l;
    w.index = sept::entry_index(gpa, l);
    if (l == level) {
      w.reached = true;
      return w;
    }
    const uint64_t e = w.value();
    if (sept::state_of(e) != SeptState::NlMapped) return w;
    SeptTable* child = find(sept::pfn_of(e));
    if (child == nullptr) return w;
    t = child;
  }
}

void SeptTree::for_each(const Visitor& fn) const { for_each_in(0, ~0ull, 0, fn); }

void SeptTree::for_each_in(uint64_t start, uint64_t end, int lowest, const Visitor& fn) const {
  if (const SeptTable* root = root_.valid() ? find(root_) : nullptr) visit(*root, 0, start, end, lowest, fn);
}

void SeptTree::visit(const SeptTable& t, uint64_t base, uint64_t start, uint64_t end, int lowest,
                     const Visitor& fn) const {
  const uint64_t span = uint64_t{1} << sept::level_shift(t.level);
  for (uint64_t i = start > base ? (start - base) / span : 0; i < t.e.size(); ++i) {
    const uint64_t gpa = base + i * span;
    if (gpa >= end) break;
    const uint64_t e = std::atomic_ref<uint64_t>(const_cast<uint64_t&>(t.e[i])).load(std::memory_order_relaxed);
    const SeptState s = sept::state_of(e);
    if (s == SeptState::Free) continue;
    if (gpa >= start) fn(gpa, t.level, e);
    // Blocked subtrees are still part of the tree; only walks stop there.
    if (is_nonleaf_state(s) && t.level > lowest) {
      if (const SeptTable* child = find(sept::pfn_of(e))) visit(*child, gpa, start, end, lowest, fn);
    }
  }
}

}  // namespace mirrormmu::tdx
