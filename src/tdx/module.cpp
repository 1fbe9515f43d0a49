// SPDX-License-Identifier: MIT
// TdxModule: construction, accounting, the module's locks, the checks shared
// by every SEAMCALL, and introspection. The calls themselves are in
// module_build.cpp (TD and vCPU build), module_sept.cpp (S-EPT management),
// module_track.cpp (epochs, VP.ENTER, guest ACCEPT) and module_teardown.cpp
// (HKID release and reclaim).
#include <stdexcept>
#include <algorithm>
#include <utility>

#include "tdx/module_impl.h"

namespace mirrormmu::tdx {

TdxModule::TdxModule(PfnPool& pool, ModuleConfig cfg, FaultInjector* inject)
    : pool_(pool), cfg_(cfg), inject_(inject) {
  if (cfg.sept_levels != 4 && cfg.sept_levels != 5) throw std::invalid_argument("sept_levels must be 4 or 5");
  if (cfg.tdcs_pages < 1) throw std::invalid_argument("tdcs_pages must be >= 1 (the root is a TDCS page)");
  if (cfg.tdvpx_pages < 0) throw std::invalid_argument("tdvpx_pages must be >= 0");
  if (pool.size() > sept::kMaxFrames)
    throw std::invalid_argument("the host pool is larger than an S-EPT entry's 28-bit frame number reaches (1 TiB)");
  impl_ = std::make_unique<Impl>(*this, pool.size(), cfg.sept_levels);
}

TdxModule::~TdxModule() = default;

// ---- accounting ----------------------------------------------------------------

void TdxModule::count_call(Leaf leaf, Status s) {
  const auto l = static_cast<size_t>(leaf);
  if (s == TDX_SUCCESS) [[likely]] {
    successes_.add(l);
    return;
  }
  std::lock_guard g(failures_mu_);
  ++failures_[l][s];
}

TdxModule::LeafStats TdxModule::stats(Leaf leaf) const {
  const auto l = static_cast<size_t>(leaf);
  LeafStats st;
  const uint64_t ok = successes_.sum(l);
  std::lock_guard g(failures_mu_);
  st.by_status = failures_[l];
  for (const auto& [status, n] : st.by_status) st.calls += n;
  if (ok) st.by_status[TDX_SUCCESS] = ok;
  st.calls += ok;
  return st;
}

void TdxModule::Impl::record(Leaf leaf, uint64_t gpa, int tdx_level, Status s) {
  m.count_call(leaf, s);
  const bool injected_now = std::exchange(t_last_injected, false);
  if (m.observer_ == nullptr) return;
  if (injected_now)
    m.observer_->on_injected_seamcall(leaf, gpa, tdx_level, s);
  else
    m.observer_->on_seamcall(leaf, gpa, tdx_level, s);
}

Status TdxModule::Impl::injected(Operand busy_operand, bool contended) {
  if (m.inject_ == nullptr) return TDX_SUCCESS;
  // Under tdh_do_no_vcpus()'s retry nothing can contend: BUSY there is
  // offered only as its own kind, which the user must budget for.
  const bool retry = m.host_exclusive();
  const Injection i = m.inject_->check(InjectPoint::Seamcall, contended, retry);
  if (i != Injection::None) t_last_injected = true;
  switch (i) {
    case Injection::None: return TDX_SUCCESS;
    case Injection::Busy: return with_operand(TDX_OPERAND_BUSY, busy_operand);
    // NoMem has no SEAMCALL meaning; an armed point must still fail visibly.
    case Injection::Error:
    case Injection::NoMem: return with_operand(TDX_OPERAND_INVALID, Operand::RCX);
  }
  return TDX_SUCCESS;
}

bool TdxModule::Impl::host_interrupt_pending() {
  return m.inject_ != nullptr && m.inject_->check(InjectPoint::HostInterrupt) != Injection::None;
}

void TdxModule::plant_window_hides_holds() { impl_->flaw_window_hides_holds = true; }

void TdxModule::plant_exclusive_ignores_shared() {
  for (ShardedSharexLock* l : {&impl_->tdr_lock, &impl_->sept_tree_lock, &impl_->epoch_lock})
    l->plant_flaw(ShardedSharexLock::Flaw::ExclusiveIgnoresShared);
}

// ---- module try-locks ------------------------------------------------------------

// The per-entry lock is the TDEL bit inside the entry itself, as in the
// module. `alone`: the caller holds the model's lock exclusively, or by its
// bias, so nobody else reads or writes entries now (a call in a window
// holds its entry locks outside the model's lock, but touches nothing until
// it is back in): a load and a store do what a compare-and-swap does for
// calls side by side.
Status TdxModule::Impl::try_lock_entry(sept::Word& entry, bool alone) {
  std::atomic_ref<sept::Word> a(entry);
  sept::Word v = a.load(std::memory_order_relaxed);
  if (alone) {
    if ((v & sept::kLockBit) != 0) return with_operand(TDX_OPERAND_BUSY, Operand::RCX);
    a.store(v | sept::kLockBit, std::memory_order_relaxed);
    return TDX_SUCCESS;
  }
  do {
    if ((v & sept::kLockBit) != 0) return with_operand(TDX_OPERAND_BUSY, Operand::RCX);
  } while (!a.compare_exchange_weak(v, v | sept::kLockBit, std::memory_order_acquire, std::memory_order_relaxed));
  return TDX_SUCCESS;
}

TdxModule::Impl::LockSet::~LockSet() {
  for (size_t i = 0; i < nregions_; ++i) impl_.pamt_region_locks[regions_[i].region].unlock(regions_[i].mode);
  if (entry_ != nullptr) {
    // A load and a store: while the bit is set nobody else writes the
    // entry (every other attempt to lock it fails without a write).
    std::atomic_ref<sept::Word> a(*entry_);
    a.store(a.load(std::memory_order_relaxed) & ~sept::kLockBit, std::memory_order_release);
  }
  release(impl_.epoch_lock, epoch_, kEpoch);
  release(impl_.sept_tree_lock, tree_, kTree);
  release(impl_.tdr_lock, tdr_, kTdr);
}

Status TdxModule::Impl::LockSet::take(ShardedSharexLock& l, LockMode mode, TdLock which, Status busy) {
  if (mode == LockMode::Shared) {
    if (l.held_exclusive()) return busy;
    implicit_ |= which;
    return TDX_SUCCESS;
  }
  // The other half of keeping shared holds inside LockSets: a thread inside
  // mu beside this one could hold this lock shared without a trace.
  if (!impl_.mu.held_exclusive_by_me()) [[unlikely]]
    throw std::logic_error("a TD-wide module lock tried exclusively without the model's lock held exclusively");
  return l.try_lock_exclusive_alone() ? TDX_SUCCESS : busy;
}

void TdxModule::Impl::LockSet::release(ShardedSharexLock& l, std::optional<LockMode>& slot, TdLock which) {
  if (!slot) return;
  if ((implicit_ & which) == 0) l.unlock(*slot);
  implicit_ &= static_cast<uint8_t>(~which);
  slot.reset();
}

void TdxModule::Impl::LockSet::window(const void* lock) {
  if (!impl_.window_wanted()) [[likely]]
    return;
  if (!impl_.flaw_window_hides_holds) {
    if (implicit_ & kTdr) impl_.tdr_lock.publish_shared();
    if (implicit_ & kTree) impl_.sept_tree_lock.publish_shared();
    if (implicit_ & kEpoch) impl_.epoch_lock.publish_shared();
    implicit_ = 0;
  }
  impl_.open_window(lock);
}

Status TdxModule::Impl::LockSet::tdr(LockMode mode, Operand busy_operand) {
  const Status s = take(impl_.tdr_lock, mode, kTdr, with_operand(TDX_OPERAND_BUSY, busy_operand));
  if (s == TDX_SUCCESS) tdr_ = mode;
  return s;
}

Status TdxModule::Impl::LockSet::hold(Status s, std::optional<LockMode>& slot, LockMode mode, const void* lock) {
  if (s == TDX_SUCCESS) {
    slot = mode;
    window(lock);
  }
  return s;
}

Status TdxModule::Impl::LockSet::sept_tree(LockMode mode) {
  return hold(take(impl_.sept_tree_lock, mode, kTree, with_operand(TDX_OPERAND_BUSY, Operand::SEPT_TREE)), tree_,
              mode, &impl_.sept_tree_lock);
}

Status TdxModule::Impl::LockSet::epoch(LockMode mode) {
  return hold(take(impl_.epoch_lock, mode, kEpoch, with_operand(TDX_OPERAND_BUSY, Operand::TD_EPOCH)), epoch_, mode,
              &impl_.epoch_lock);
}

void TdxModule::Impl::LockSet::release_epoch() { release(impl_.epoch_lock, epoch_, kEpoch); }

Status TdxModule::Impl::LockSet::entry(sept::Word& e) {
  const Status s = impl_.try_lock_entry(e, impl_.mu.held_alone_by_me());
  if (s == TDX_SUCCESS) {
    entry_ = &e;
    window(&e);
  }
  return s;
}

// ---- shared checks -----------------------------------------------------------------

// The TDR operand must name a frame the PAMT records as a TDR: before
// MNG.CREATE and after the TDR is reclaimed there is none.
Status TdxModule::Impl::check_tdr(Operand op) const {
  if (!m.tdr_.valid() || pamt.type(m.tdr_) != PamtType::Tdr) {
    return with_operand(TDX_PAGE_METADATA_INCORRECT, op);
  }
  return TDX_SUCCESS;
}

Status TdxModule::Impl::td_prologue(LockSet& locks, Operand tdr_operand, LockMode tdr_mode, OpStates ok) {
  if (Status s = check_tdr(tdr_operand)) return s;
  if (Status s = locks.tdr(tdr_mode, tdr_operand)) return s;
  // check_td_in_correct_build_state(): a fatal TD refuses every call that
  // maps or runs it; the teardown leaves have no such check.
  if (fatal) return TDX_TD_FATAL;
  if (m.lifecycle_ != Lifecycle::KeysConfigured) return TDX_TD_KEYS_NOT_CONFIGURED;
  if (tdcs.size() < static_cast<size_t>(m.cfg_.tdcs_pages)) return TDX_TDCS_NOT_ALLOCATED;
  if (!ok.has(m.op_state_)) return TDX_OP_STATE_INCORRECT;
  return TDX_SUCCESS;
}

Status TdxModule::Impl::check_page_info(uint64_t gpa, int level, int min_level, int max_level) const {
  const Status invalid = with_operand(TDX_OPERAND_INVALID, Operand::RCX);
  if (level < min_level || level > max_level) return invalid;
  if ((gpa & (sept::level_bytes(level) - 1)) != 0) return invalid;
  if ((gpa >> tree.shared_bit()) != 0) return invalid;  // shared, or beyond GPAW
  return TDX_SUCCESS;
}

Ret TdxModule::Impl::mem_prologue(LockSet& locks, const MemCall& c, uint64_t gpa, int level, SeptWalk& w) {
  if (Status s = td_prologue(locks, Operand::RDX, c.tdr_lock, c.op_states)) return {s};
  const int max_level = c.max_level == kRootLevel ? tree.root_level() : c.max_level;
  if (Status s = check_page_info(gpa, level, c.min_level, max_level)) return {s};
  if (c.tree_lock) {
    if (Status s = locks.sept_tree(*c.tree_lock)) return {s};
  }
  w = tree.walk(gpa, level);
  if (!w.reached) return ext(with_operand(TDX_EPT_WALK_FAILED, Operand::RCX), w);
  if (Status s = locks.entry(w.raw())) return ext(s, w);
  return {};
}

Status TdxModule::Impl::check_new_page(Pfn base, int size_level, Operand op) const {
  const uint64_t n = Pamt::frames(size_level);
  if (base.valid() && (base.v & (n - 1)) != 0) return with_operand(TDX_OPERAND_INVALID, op);
  if (!pamt.range_in(base, n)) return with_operand(TDX_OPERAND_ADDR_RANGE_ERROR, op);
  if (!pamt.all_nda(base, n)) return with_operand(TDX_PAGE_METADATA_INCORRECT, op);
  return TDX_SUCCESS;
}

// The module's predicate on a blocked object's BEPOCH: a TRACK happened after
// the BLOCK and every vCPU that entered before that TRACK has left.
Ret TdxModule::Impl::require_blocked_and_tracked(const SeptWalk& w) const {
  if (!tracking_required()) return {};
  if (!is_blocked_state(w.state())) return ext(with_operand(TDX_GPA_RANGE_NOT_BLOCKED, Operand::RCX), w);
  if (!tracked(w.pfn())) return ext(with_operand(TDX_TLB_TRACKING_NOT_DONE, Operand::RCX), w);
  return {};
}

bool TdxModule::Impl::tracked(Pfn blocked_object) const {
  const std::optional<uint64_t> b = pamt.bepoch(blocked_object);
  if (!b) return false;
  const uint64_t epoch = m.td_epoch_;
  if (m.cfg_.lax_tlb_tracking) return *b < epoch;
  if (*b + 1 < epoch) return true;
  return *b + 1 == epoch && epoch_refcount[*b & 1].load() == 0;
}

void TdxModule::Impl::index_vcpu(int vcpu, Vcpu* v) {
  const auto id = static_cast<size_t>(vcpu);
  const VcpuIndex* cur = vcpu_index.load(std::memory_order_relaxed);
  if (cur == nullptr || id >= cur->size) {
    auto grown = std::make_unique<VcpuIndex>();
    grown->size = std::max<size_t>(8, 2 * (id + 1));
    grown->slot = std::make_unique<std::atomic<Vcpu*>[]>(grown->size);
    for (size_t i = 0; cur != nullptr && i < cur->size; i++)
      grown->slot[i].store(cur->slot[i].load(std::memory_order_relaxed), std::memory_order_relaxed);
    cur = grown.get();
    vcpu_indexes.push_back(std::move(grown));
    vcpu_index.store(cur, std::memory_order_release);
  }
  cur->slot[id].store(v, std::memory_order_release);
}

Ret TdxModule::Impl::ext(Status s, const SeptWalk& w) {
  const sept::Word e = w.value();
  return Ret{s, sept::arch_entry(e, w.level), sept::level_state(e, w.level)};
}

// ---- introspection -----------------------------------------------------------------

void TdxModule::for_each_entry(const std::function<void(const EntryView&)>& fn) const {
  std::shared_lock lock(impl_->mu);
  impl_->tree.for_each([&](uint64_t gpa, int level, sept::Word e) {
    fn(EntryView{gpa, level, sept::state_of(e), sept::pfn_of(e)});
  });
}

void TdxModule::for_each_entry_in(uint64_t start, uint64_t end, int lowest_level,
                                  const std::function<void(const EntryView&)>& fn) const {
  std::shared_lock lock(impl_->mu);
  impl_->tree.for_each_in(start, end, lowest_level, [&](uint64_t gpa, int level, sept::Word e) {
    fn(EntryView{gpa, level, sept::state_of(e), sept::pfn_of(e)});
  });
}

void TdxModule::entries_in(uint64_t start, uint64_t end, int lowest_level, std::vector<EntryView>& out) const {
  std::shared_lock lock(impl_->mu);
  impl_->tree.for_each_in(start, end, lowest_level, [&](uint64_t gpa, int level, sept::Word e) {
    out.push_back(EntryView{gpa, level, sept::state_of(e), sept::pfn_of(e)});
  });
}

TdxModule::EntryView TdxModule::read_entry(uint64_t gpa, int tdx_level) const {
  std::shared_lock lock(impl_->mu);
  if (tdx_level < 0 || tdx_level > impl_->tree.root_level()) {
    return EntryView{gpa, tdx_level, SeptState::Free, kInvalidPfn};
  }
  const uint64_t base = gpa & ~(sept::level_bytes(tdx_level) - 1);
  const EntryView none{base, tdx_level, SeptState::Free, kInvalidPfn};
  const SeptWalk w = impl_->tree.walk(gpa, tdx_level);
  if (!w.reached) return none;
  return EntryView{base, tdx_level, w.state(), w.pfn()};
}

TdxModule::EntryView TdxModule::read_leaf(uint64_t gpa) const {
  std::shared_lock lock(impl_->mu);
  // The walk toward 4K stops early at a larger leaf: that leaf maps gpa.
  const SeptWalk w = impl_->tree.walk(gpa, 0);
  const int level = w.reached ? 0 : w.level;
  const uint64_t base = gpa & ~(sept::level_bytes(level) - 1);
  if (!is_leaf_state(w.state())) return EntryView{base, level, SeptState::Free, kInvalidPfn};
  return EntryView{base, level, w.state(), w.pfn()};
}

void TdxModule::cache_dirty_in(uint64_t first, uint64_t n, std::vector<Pfn>* out) const {
  std::shared_lock lock(impl_->mu);
  impl_->pamt.for_each_cache_dirty([&](Pfn f) { out->push_back(f); }, first, n);
}

bool TdxModule::cache_dirty(Pfn pfn) const {
  std::shared_lock lock(impl_->mu);
  return impl_->pamt.cache_dirty(pfn);
}

PamtType TdxModule::pamt_type(Pfn pfn) const {
  std::shared_lock lock(impl_->mu);
  return impl_->pamt.type(pfn);
}

std::vector<std::pair<Pfn, PamtType>> TdxModule::assigned_frames(uint64_t nframes) const {
  std::vector<std::pair<Pfn, PamtType>> out;
  std::shared_lock lock(impl_->mu);
  nframes = std::min(nframes, impl_->pamt.size());
  for (uint64_t i = 0; i < nframes; i++)
    if (const PamtType t = impl_->pamt.type(Pfn{i}); t != PamtType::Nda) out.emplace_back(Pfn{i}, t);
  return out;
}

bool TdxModule::hkid_assigned() const {
  // One atomic, read once: the module's lock would add nothing but two
  // locked instructions to every TD exit that asks.
  const Lifecycle l = lifecycle_.load(std::memory_order_acquire);
  return l == Lifecycle::HkidAssigned || l == Lifecycle::KeysConfigured || l == Lifecycle::Blocked;
}

bool TdxModule::vcpu_in_guest(int vcpu) const {
  sync::sched_touch(&impl_->mu);
  const Impl::Vcpu* v = impl_->find_vcpu(vcpu);
  return v != nullptr && v->guest();
}

}  // namespace mirrormmu::tdx
