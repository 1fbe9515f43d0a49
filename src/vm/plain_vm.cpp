// SPDX-License-Identifier: MIT
#include "vm/plain_vm.h"

#include <algorithm>
#include <cerrno>
#include <map>
#include <optional>

#include <fmt/format.h>

#include "mmu/tdp_iter.h"
#include "sync/rcu.h"

namespace mirrormmu {

namespace {

// RET_PF_* as the kernel numbers them, so both MMUs answer alike.
int ret_pf_number(RetPf r) {
  switch (r) {
    case RetPf::Continue: return 0;
    case RetPf::Retry: return 1;
    case RetPf::Emulate: return 2;
    case RetPf::WriteProtected: return 3;
    case RetPf::Invalid: return 4;
    case RetPf::Fixed: return 5;
    case RetPf::Spurious: return 6;
  }
  return 4;
}

std::mutex g_registry_mu;
std::map<std::string, DirectMmuFactory>& registry() {
  static std::map<std::string, DirectMmuFactory> r{
      {"model", [](int n) -> std::unique_ptr<DirectMmu> { return std::make_unique<PlainVm>(PlainVmConfig{n}); }},
      // The model as a 6.12 kernel behaves, to set beside `--mmu kernel` of
      // a 6.12 tree: a fault on a leaf that already allows the access
      // rebuilds it instead of returning SPURIOUS.
      {"model-6.12", [](int n) -> std::unique_ptr<DirectMmu> {
         PlainVmConfig c{n};
         c.spurious_if_access_allowed = false;
         return std::make_unique<PlainVm>(c);
       }}};
  return r;
}

}  // namespace

void register_direct_mmu(const std::string& name, DirectMmuFactory f) {
  std::lock_guard g(g_registry_mu);
  registry()[name] = f;
}
DirectMmuFactory find_direct_mmu(const std::string& name) {
  std::lock_guard g(g_registry_mu);
  auto it = registry().find(name);
  return it == registry().end() ? nullptr : it->second;
}
std::vector<std::string> direct_mmu_names() {
  std::lock_guard g(g_registry_mu);
  std::vector<std::string> out;
  for (const auto& [n, f] : registry()) out.push_back(n);
  return out;
}

std::string direct_mmu_refusal(const std::string& name) {
  if (find_direct_mmu(name)) return "";
  if (name == "kernel") return "--mmu kernel: this mirrormmu was built without a kernel tree (`make oracle` builds one)";
  std::string names;
  for (const auto& n : direct_mmu_names()) names += (names.empty() ? "" : ", ") + n;
  return "--mmu: no MMU named '" + name + "' (valid: " + names + ")";
}

// Enough frames for the page tables of a few GiB of 4K mappings; guest
// memory is not allocated here (the workload hands out pfns).
PlainVm::PlainVm(PlainVmConfig cfg) : DirectMmu(std::max(cfg.nr_vcpus, 1)), cfg_(cfg), pool_(1u << 20) {
  TdpMmuConfig mc;
  mc.max_gfn_exclusive = 1ull << (48 - kPageShift);
  mc.spurious_if_access_allowed = cfg.spurious_if_access_allowed;
  mc.plain_store_over_volatile = cfg.plain_store_over_volatile;
  mc.zap_atomic_no_flush = cfg.zap_atomic_no_flush;
  mc.lockless_aging = cfg.lockless_aging;
  mc.nx_huge_pages = cfg.nx_huge_pages;
  mc.age_plain_store = cfg.age_plain_store;
  mmu_ = std::make_unique<TdpMmu>(pool_, bugs_, mc);
  mmu_->set_observer(this);
  mmu_->set_remote_tlb(this);
  for (int i = 0; i < std::max(cfg.nr_vcpus, 1); i++) vcpus_.push_back(std::make_unique<Vcpu>(pool_));
}

PlainVm::~PlainVm() { destroy(); }

void PlainVm::on_spte_changed(const SpteChange& c) {
  stats_.transitions.add({spte::kind_of(c.old_spte, c.level, 0), spte::kind_of(c.new_spte, c.level, 0), c.shared,
                          c.mirror});
}

void PlainVm::flush(Gfn start, uint64_t npages) {
  stats_.flushes.fetch_add(1, std::memory_order_relaxed);
  if (npages)
    hw().flush_range(start.v, npages);
  else
    hw().flush_all();
}

void PlainVm::on_lost_update(Gfn gfn, PgLevel level, uint64_t expected, uint64_t actual, uint64_t new_spte) {
  hw().report(fmt::format("lost_update: an exclusive write of gfn {:#x} (L{}) replaced {:#x} with {:#x}, but the entry "
                          "held {:#x}: the bits a writer outside mmu_lock set meanwhile are lost",
                          gfn.v, lvl(level), expected, new_spte, actual));
}

// fast_page_fault(): a write to a leaf that is write-protected for dirty
// logging but still MMU-writable is fixed under RCU alone, with a cmpxchg
// that fails if anything changed the entry since it was read, and the page
// is logged. Everything else goes the slow way.
RetPf PlainVm::fast_page_fault(MmuPage* root, uint64_t gfn, Slot& s) {
  using namespace spte;
  sync::RcuReadGuard rcu;  // kvm_tdp_mmu_walk_lockless_begin()
  for (int retry = 0;; retry++) {
    uint64_t old_spte = kFrozen;
    PgLevel level = PgLevel::k4K;
    uint64_t* sptep = mmu_->kvm_tdp_mmu_fast_pf_get_last_sptep(root, Gfn{gfn}, &old_spte, &level);
    if (!sptep || !is_shadow_present(old_spte) || !is_last(old_spte, level)) return RetPf::Invalid;
    if (is_writable(old_spte)) return RetPf::Spurious;  // is_access_allowed()
    if (!is_mmu_writable(old_spte)) return RetPf::Invalid;
    // A huge page in a logging slot must be split by the slow path.
    if (level > PgLevel::k4K && s.dirty_log) return RetPf::Invalid;
    if (sync::cmpxchg_spte(sptep, old_spte, old_spte | kWritable)) {
      if (!cfg_.fast_pf_no_mark_dirty) [[likely]] {
        const uint64_t i = gfn - s.base;
        sync::sched_touch(&slots_);
        s.dirty[i / 64].fetch_or(1ull << (i % 64), std::memory_order_relaxed);
      }
      return RetPf::Fixed;
    }
    if (retry >= 4) return RetPf::Invalid;
  }
}

// The slot map and each slot's dirty bitmap change between scheduling
// points: every use touches the map, for partial-order reduction.
PlainVm::Slot* PlainVm::slot_of(uint64_t gfn) {
  sync::sched_touch(&slots_);
  for (auto& [id, s] : slots_)
    if (gfn >= s.base && gfn < s.base + s.npages) return &s;
  return nullptr;
}

int PlainVm::memslot_set(int id, uint64_t base, uint64_t npages) {
  if (id < 0 || !npages) return -EINVAL;
  sync::WriteGuard g(slots_lock_);
  sync::sched_touch(&slots_);
  if (slots_.count(id)) return -EEXIST;
  for (const auto& [i, s] : slots_)
    if (base < s.base + s.npages && s.base < base + npages) return -EEXIST;
  Slot& s = slots_[id];
  s.base = base;
  s.npages = npages;
  s.dirty = std::make_unique<std::atomic<uint64_t>[]>((npages + 63) / 64);
  return 0;
}

int PlainVm::memslot_delete(int id) {
  {
    // kvm_invalidate_memslot(): the slot is published as KVM_MEMSLOT_INVALID
    // first, so a fault that still finds it backs off instead of mapping.
    sync::ReadGuard g(slots_lock_);
    sync::sched_touch(&slots_);
    auto it = slots_.find(id);
    if (it == slots_.end()) return -ENOENT;
    it->second.invalid.store(true, std::memory_order_release);
  }
  // synchronize_srcu(): every reader that may have seen the slot valid is
  // done before the zap.
  sync::WriteGuard g(slots_lock_);
  sync::sched_touch(&slots_);
  auto it = slots_.find(id);
  {
    // kvm_arch_flush_shadow_memslot() without the zap-all quirk.
    sync::WriteGuard l(mmu_->mmu_lock());
    if (mmu_->kvm_tdp_mmu_unmap_gfn_range({Gfn{it->second.base}, Gfn{it->second.base + it->second.npages}}, false))
      mmu_->kvm_flush_remote_tlbs();
  }
  slots_.erase(it);
  return 0;
}

int PlainVm::memslot_dirty_log(int id, bool on) {
  sync::WriteGuard g(slots_lock_);
  sync::sched_touch(&slots_);
  auto it = slots_.find(id);
  if (it == slots_.end()) return -ENOENT;
  Slot& s = it->second;
  if (s.dirty_log == on) return 0;
  s.dirty_log = on;
  if (!on) {
    // kvm_mmu_zap_collapsible_sptes(): the small pages logging left behind
    // give way to huge ones again, where the slot and the host allow.
    if (cfg_.no_huge_page_recovery) return 0;
    sync::RcuThread rcu;
    sync::ReadGuard l(mmu_->mmu_lock());
    mmu_->kvm_tdp_mmu_zap_collapsible_sptes(Gfn{s.base}, Gfn{s.base + s.npages},
                                            [&](Gfn g) { return max_mapping_level(s, g.v, host().level(g.v)); });
    return 0;
  }
  bool flush;
  {
    sync::ReadGuard l(mmu_->mmu_lock());
    flush = mmu_->kvm_tdp_mmu_wrprot_slot(Gfn{s.base}, Gfn{s.base + s.npages}, PgLevel::k4K);
  }
  if (flush) mmu_->kvm_flush_remote_tlbs_range(Gfn{s.base}, s.npages);
  return 0;
}

// The largest level at or below host_level that lies whole inside the slot
// (lpage_info), 4K while the slot logs dirty pages.
int PlainVm::max_mapping_level(const Slot& s, uint64_t gfn, int host_level) const {
  if (s.dirty_log) return 1;
  int level = std::min(host_level, kMaxHugeLevel);
  for (; level > 1; level--) {
    const uint64_t n = pages_per_hpage(to_level(level));
    const uint64_t base = gfn & ~(n - 1);
    if (base >= s.base && base + n <= s.base + s.npages) break;
  }
  return level;
}

// kvm_mmu_reload(), with the obsolete root dropped first. 1 when a root was
// loaded, 0 when the vCPU keeps its own.
int PlainVm::mmu_load(int vcpu) {
  Vcpu& v = *vcpus_[vcpu];
  // The root's invalid bit is written under mmu_lock held for write (a fast
  // zap); the vCPU looks at it under the lock, as is_page_fault_stale() does.
  MmuPage* root = v.root.load(std::memory_order_relaxed);
  bool obsolete;
  {
    sync::ReadGuard l(mmu_->mmu_lock());
    obsolete = root && root->role.invalid;
  }
  if (obsolete) {
    v.root.store(nullptr, std::memory_order_release);
    mmu_->kvm_tdp_mmu_put_root(root);
    root = nullptr;
  }
  if (root) return 0;
  if (int r = mmu_->mmu_topup_memory_caches(v.caches)) return r;
  root = mmu_->kvm_tdp_mmu_alloc_root(v.caches, false);
  if (!root) return -ENOMEM;
  v.root.store(root, std::memory_order_release);
  // kvm_mmu_load(): "the provenance of the root is unknown", so flush what
  // the CPU may hold for it.
  hw().flush_current(vcpu);
  return 1;
}

int PlainVm::reload_root(int vcpu) {
  sync::RcuThread rcu;
  return mmu_load(vcpu);
}

// The CPU's walk: no lock, no RCU of its own (the model takes RCU only so a
// table it reads stays memory; KVM's promise is that none it can reach is
// freed before the vCPU leaves the root or the TLB is flushed).
HwWalk PlainVm::walk(int vcpu, uint64_t gfn, WalkFor why) {
  if (vcpu < 0 || vcpu >= static_cast<int>(vcpus_.size())) return {};
  sync::RcuThread rcu;
  sync::RcuReadGuard g;
  MmuPage* root = vcpus_[vcpu]->root.load(std::memory_order_acquire);
  if (!root) return {};
  for (;;) {
    HwWalk w;
    Pfn table = root->spt_pfn;
    for (PgLevel level = root->role.level;; level = lower(level)) {
      w.tables[w.ntables++] = table.v;
      uint64_t* sptep = pool_.page_ptr(table) + spte_index(gfn, level);
      // The CPU's read is no scheduling point; the step that makes it names it.
      sync::sched_touch(sptep);
      uint64_t s = sync::spte_ref(sptep).load(std::memory_order_acquire);
      if (!(s & spte::kRwx)) return w;  // what the CPU calls not present
      if (level != PgLevel::k4K && !(s & spte::kLarge)) {
        table = spte::to_pfn(s);
        continue;
      }
      // EPT A/D: a locked update of the entry as the CPU read it; if it
      // changed meanwhile the CPU walks again.
      uint64_t set = 0;
      if (why != WalkFor::Inspect && !(s & spte::kAccessed)) set |= spte::kAccessed;
      if (why == WalkFor::Write && (s & spte::kWritable) && !(s & spte::kDirty)) set |= spte::kDirty;
      if (set) {
        if (!sync::cmpxchg_spte(sptep, s, s | set)) break;
        s |= set;
      }
      w.leaf = true;
      w.level = lvl(level);
      w.pfn = spte::to_pfn(s).v + (gfn & (pages_per_hpage(level) - 1));
      w.writable = s & spte::kWritable;
      w.dirty = s & spte::kDirty;
      w.executable = s & spte::kExecutable;
      return w;
    }
  }
}

bool PlainVm::mmu_invalidate_retry_gfn(uint64_t mmu_seq, uint64_t gfn) const {
  if (cfg_.no_invalidate_retry) [[unlikely]] return false;
  if (invalidate_in_progress_.load(std::memory_order_acquire) && gfn >= invalidate_start_.load() &&
      gfn < invalidate_end_.load())
    return true;
  return invalidate_seq_.load(std::memory_order_acquire) != mmu_seq;
}

// kvm_mmu_notifier_invalidate_range_start(): kvm_mmu_invalidate_begin() and
// the range added in the same mmu_lock section as the zap, so a fault that
// takes the lock afterwards sees the range before it could map.
void PlainVm::invalidate_range_start(uint64_t start, uint64_t end) {
  sync::RcuThread rcu;
  sync::ReadGuard slots(slots_lock_);
  bool flush;
  {
    sync::WriteGuard l(mmu_->mmu_lock());
    if (invalidate_in_progress_.fetch_add(1) == 0) {
      invalidate_start_.store(start);
      invalidate_end_.store(end);
    } else {
      invalidate_start_.store(std::min(invalidate_start_.load(), start));
      invalidate_end_.store(std::max(invalidate_end_.load(), end));
    }
    flush = mmu_->kvm_tdp_mmu_unmap_gfn_range({Gfn{start}, Gfn{end}}, false);
    if (flush) mmu_->kvm_flush_remote_tlbs();
  }
}

// kvm_mmu_invalidate_end(): the sequence moves before the count drops, so
// a fault that sees the count at zero sees the new sequence too.
void PlainVm::invalidate_range_end(uint64_t, uint64_t) {
  sync::WriteGuard l(mmu_->mmu_lock());
  invalidate_seq_.fetch_add(1, std::memory_order_release);
  const int64_t left = invalidate_in_progress_.fetch_sub(1, std::memory_order_release) - 1;
  kvm_bug_on(left < 0, bugs_, Site::invalidate_underflow);
}

// kvm_age_gfn() / kvm_test_age_gfn() per memslot overlapping the range, under
// mmu_lock for write as 6.12 takes it.
bool PlainVm::age(uint64_t start, uint64_t end, bool test_only) {
  sync::RcuThread rcu;
  sync::ReadGuard slots(slots_lock_);
  // KVM_MMU_NOTIFIER_YOUNG_LOCKLESS: the TDP MMU ages under RCU alone.
  std::optional<sync::WriteGuard> l;
  if (!cfg_.lockless_aging) l.emplace(mmu_->mmu_lock());
  bool young = false;
  for (const auto& [id, s] : slots_) {
    const uint64_t lo = std::max(start, s.base), hi = std::min(end, s.base + s.npages);
    if (lo >= hi) continue;
    young |= test_only ? mmu_->kvm_tdp_mmu_test_age_gfn(Gfn{lo}, Gfn{hi}) : mmu_->kvm_tdp_mmu_age_gfn_range(Gfn{lo}, Gfn{hi});
  }
  return young;
}

int PlainVm::fault(int vcpu, uint64_t gfn, bool write, int host_level) {
  if (vcpu < 0 || vcpu >= static_cast<int>(vcpus_.size()) || host_level < 1) return -EINVAL;
  sync::RcuThread rcu;
  std::optional<sync::ReadGuard> slots;
  if (!cfg_.no_slots_lock_in_fault) [[likely]] slots.emplace(slots_lock_);
  return fault_locked(vcpu, gfn, write, host_level, false);
}

// The retries after which a prefault counts as interrupted (the VMM's
// signal): far more than any race needs, so only a livelock reaches it.
constexpr uint64_t kPrefaultRetryLimit = 100000;

// KVM_PRE_FAULT_MEMORY: kvm_vcpu_pre_fault_memory() holds the memslot read
// lock (SRCU) across the whole range; each page is kvm_tdp_map_page(), a
// prefetch fault retried until it is no longer RET_PF_RETRY.
int PlainVm::pre_fault_memory(int vcpu, uint64_t gfn, uint64_t npages) {
  if (vcpu < 0 || vcpu >= static_cast<int>(vcpus_.size()) || !npages || gfn + npages <= gfn) return -EINVAL;
  sync::RcuThread rcu;
  sync::ReadGuard slots(slots_lock_);
  while (npages) {
    // kvm_mmu_reload(), here also dropping a root a fast zap made obsolete:
    // the ioctl never handles the vCPU's reload request, and 6.12's reload
    // keeps such a root, on which every fault is stale and retried.
    if (int r = mmu_load(vcpu); r < 0) return r;
    int r;
    uint64_t tries = 0;
    do {
      // signal_pending(): a VMM would give up on a prefault that spins.
      if (++tries > kPrefaultRetryLimit) return -EINTR;
      sync::cond_resched_spin(this);
      r = fault_locked(vcpu, gfn, false, host().level(gfn), true);
    } while (r == ret_pf_number(RetPf::Retry));
    if (r == -EFAULT) return -ENOENT;  // no memslot: RET_PF_EMULATE
    if (r < 0) return r;
    // The page is mapped at whatever level the fault chose; the next one
    // starts after it.
    int level = 1;
    (void)lookup(vcpu, gfn, &level);
    const uint64_t n = pages_per_hpage(to_level(level));
    const uint64_t done = std::min(npages, n - (gfn & (n - 1)));
    gfn += done;
    npages -= done;
  }
  return 0;
}

int PlainVm::exec_fault(int vcpu, uint64_t gfn, int host_level) {
  if (vcpu < 0 || vcpu >= static_cast<int>(vcpus_.size()) || host_level < 1) return -EINVAL;
  sync::RcuThread rcu;
  sync::ReadGuard slots(slots_lock_);
  return fault_locked(vcpu, gfn, false, host_level, false, true);
}

int PlainVm::set_nx_huge_pages(bool on) {
  if (mmu_->stats().tdp_mmu_pages.load() != 0) return -EBUSY;
  cfg_.nx_huge_pages = on;
  mmu_->set_nx_huge_pages(on);
  return 0;
}

// kvm_recover_nx_huge_pages() as upstream runs it for the TDP MMU (6.16 on):
// mmu_lock for read, RCU across the whole pass so no zapped table is freed
// before the flush that makes vCPUs forget it.
int PlainVm::recover_nx_huge_pages(unsigned ratio) {
  sync::RcuThread rcu_thread;
  sync::ReadGuard slots(slots_lock_);
  sync::ReadGuard l(mmu_->mmu_lock());
  sync::RcuReadGuard rcu;
  const uint64_t splits = mmu_->stats().nx_lpage_splits.load(std::memory_order_relaxed);
  uint64_t to_zap = ratio ? (splits + ratio - 1) / ratio : 0;
  int zapped = 0;
  for (; to_zap; --to_zap) {
    MmuPage* sp = mmu_->pop_possible_nx_huge_page();
    if (!sp) break;
    // A dirty-logged slot would only fault it back in at 4K; its huge pages
    // come back when logging stops.
    if (const Slot* s = slot_of(sp->gfn.v); s && s->dirty_log) continue;
    if (mmu_->kvm_tdp_mmu_zap_possible_nx_huge_page(sp)) zapped++;
  }
  if (zapped && !cfg_.nx_recovery_no_flush) [[likely]]
    mmu_->kvm_flush_remote_tlbs();
  return zapped;
}

int PlainVm::fault_locked(int vcpu, uint64_t gfn, bool write, int host_level, bool prefetch, bool exec) {
  Vcpu& v = *vcpus_[vcpu];
  Slot* s = slot_of(gfn);
  if (!s) return -EFAULT;
  // kvm_mmu_reload(): only a vCPU without a root loads one here; an
  // obsolete root is dropped when the vCPU handles the reload request on
  // its way into the guest, and until then is_page_fault_stale() refuses it.
  if (!v.root.load(std::memory_order_relaxed))
    if (int r = mmu_load(vcpu); r < 0) return r;
  MmuPage* root = v.root.load(std::memory_order_relaxed);
  if (write)
    if (const RetPf r = fast_page_fault(root, gfn, *s); r != RetPf::Invalid) return ret_pf_number(r);
  if (int r = mmu_->mmu_topup_memory_caches(v.caches)) return r;
  // kvm_faultin_pfn(): the memslot is being deleted: retry until it is
  // gone, so no leaf is installed for it after its zap. A prefault cannot
  // wait for that, since it holds the very read lock the deletion waits
  // for: upstream punts -EAGAIN to userspace (6.12 retried forever).
  if (s->invalid.load(std::memory_order_acquire))
    return prefetch && !cfg_.prefault_retries_invalid_slot ? -EAGAIN : ret_pf_number(RetPf::Retry);
  KvmPageFault f;
  f.gfn = Gfn{gfn};
  f.addr = f.gfn.gpa();
  f.write = write;
  f.exec = exec;
  f.prefetch = prefetch;
  const PgLevel level = to_level(max_mapping_level(*s, gfn, host_level));
  // kvm_faultin_pfn(): the sequence first, then a check without the lock
  // (cheap, may miss), then the page from the host.
  const uint64_t mmu_seq = invalidate_seq_.load(std::memory_order_acquire);
  if (mmu_invalidate_retry_gfn(mmu_seq, gfn)) return ret_pf_number(RetPf::Retry);
  // The huge frame's base when mapping at `level`; the 4K frame itself when
  // NX keeps the fault at 4K (disallowed_hugepage_adjust() may go halfway).
  f.pfn = Pfn{host().pfn(gfn)};
  if (!(exec && cfg_.nx_huge_pages)) f.pfn = Pfn{f.pfn.v - (gfn & (pages_per_hpage(level) - 1))};
  f.max_level = f.req_level = f.goal_level = level;
  // kvm_mmu_hugepage_adjust(): an exec fault under the NX workaround maps
  // 4K, whatever req_level says it could have.
  f.huge_page_disallowed = exec && cfg_.nx_huge_pages;
  if (f.huge_page_disallowed) f.goal_level = PgLevel::k4K;
  // make_spte() decides whether to mark the page dirty from the slot as the
  // fault sees it, before the leaf is installed; only the memslot read lock
  // keeps that view current until the leaf is in place.
  const bool logging = s->dirty_log;
  RetPf ret;
  {
    sync::ReadGuard l(mmu_->mmu_lock());
    // is_page_fault_stale(): a fast zap invalidated the root since it was
    // loaded; retry, and the next mmu_load() takes a new one.
    // ... or an invalidation ran since the pfn was looked up.
    const bool stale = (root->role.invalid && !cfg_.no_stale_root_check) || mmu_invalidate_retry_gfn(mmu_seq, gfn);
    ret = stale ? RetPf::Retry : mmu_->kvm_tdp_mmu_map(v.caches, root, nullptr, f);
  }
  // mark_page_dirty_in_slot() from make_spte(): every writable leaf it
  // builds while the slot logs.
  if (ret == RetPf::Fixed && logging && f.map_writable) {
    const uint64_t i = gfn - s->base;
    sync::sched_touch(&slots_);
    s->dirty[i / 64].fetch_or(1ull << (i % 64), std::memory_order_relaxed);
  }
  return ret_pf_number(ret);
}

bool PlainVm::zap_leafs(uint64_t start, uint64_t end) {
  sync::WriteGuard l(mmu_->mmu_lock());
  const bool flush = mmu_->kvm_tdp_mmu_zap_leafs(Gfn{start}, Gfn{end}, false);
  if (flush && !cfg_.no_flush_after_zap) mmu_->kvm_flush_remote_tlbs_range(Gfn{start}, end - start);
  return flush;
}

void PlainVm::zap_all_fast() {
  {
    // __kvm_mmu_zap_all_fast_front_half(): the reload request goes out in
    // the same critical section as the invalidation, and waits for every
    // vCPU in the guest; the back half may then zap and free the tables
    // without a flush, since no vCPU can be using them.
    sync::WriteGuard l(mmu_->mmu_lock());
    mmu_->kvm_tdp_mmu_invalidate_roots(kDirectRoots);
    if (!cfg_.no_reload_request_in_fast_zap) hw().request_reload_all_and_wait();
  }
  mmu_->kvm_tdp_mmu_zap_invalidated_roots(true);
}

int PlainVm::get_dirty_log(int id, std::vector<uint64_t>& bits) {
  sync::ReadGuard g(slots_lock_);
  sync::sched_touch(&slots_);
  auto it = slots_.find(id);
  if (it == slots_.end()) return -ENOENT;
  Slot& s = it->second;
  bits.assign((s.npages + 63) / 64, 0);
  bool flush = false;
  {
    sync::WriteGuard l(mmu_->mmu_lock());
    for (size_t w = 0; w < bits.size(); w++) {
      sync::sched_touch(&slots_);
      bits[w] = s.dirty[w].exchange(0, std::memory_order_relaxed);
      if (!bits[w]) continue;
      flush = true;
      mmu_->kvm_tdp_mmu_clear_dirty_pt_masked(Gfn{s.base + w * 64}, bits[w]);
    }
  }
  // kvm_flush_remote_tlbs_memslot(), after mmu_lock is dropped: the log the
  // caller gets is only complete once no vCPU can write without faulting.
  if (flush && !cfg_.no_flush_after_dirty_log) mmu_->kvm_flush_remote_tlbs_range(Gfn{s.base}, s.npages);
  return 0;
}

int PlainVm::split_huge_pages(int id, int target_level, bool shared) {
  sync::ReadGuard g(slots_lock_);
  sync::sched_touch(&slots_);
  auto it = slots_.find(id);
  if (it == slots_.end() || target_level < 1 || target_level >= kMaxHugeLevel) return -EINVAL;
  // Eager splitting holds mmu_lock for read (enabling dirty logging), the
  // CLEAR_DIRTY_LOG path holds it for write; the walk drops it to allocate.
  std::optional<sync::ReadGuard> r;
  std::optional<sync::WriteGuard> w;
  if (shared) r.emplace(mmu_->mmu_lock()); else w.emplace(mmu_->mmu_lock());
  return mmu_->kvm_tdp_mmu_try_split_huge_pages(Gfn{it->second.base}, Gfn{it->second.base + it->second.npages},
                                                to_level(target_level), shared);
}

uint64_t PlainVm::lookup(int vcpu, uint64_t gfn, int* level) {
  if (vcpu < 0 || vcpu >= static_cast<int>(vcpus_.size())) return 0;
  MmuPage* root = vcpus_[vcpu]->root.load(std::memory_order_acquire);
  if (!root) return 0;
  sync::RcuThread rcu;
  sync::RcuReadGuard g;
  for (TdpIter it(pool_, root, PgLevel::k4K, Gfn{gfn}, 0); it.valid && it.gfn <= Gfn{gfn}; it.next()) {
    if (!spte::is_leaf(it.old_spte, it.level)) continue;
    if (level) *level = lvl(it.level);
    return it.old_spte;
  }
  return 0;
}

int PlainVm::peek_dirty_log(int id, std::vector<uint64_t>& bits) {
  sync::ReadGuard g(slots_lock_);
  sync::sched_touch(&slots_);
  auto it = slots_.find(id);
  if (it == slots_.end()) return -ENOENT;
  bits.resize((it->second.npages + 63) / 64);
  sync::sched_touch(&slots_);
  for (size_t w = 0; w < bits.size(); w++) bits[w] = it->second.dirty[w].load(std::memory_order_relaxed);
  return 0;
}

std::vector<DirectLeaf> PlainVm::leaves() {
  std::vector<DirectLeaf> out;
  sync::RcuThread rcu;
  sync::WriteGuard l(mmu_->mmu_lock());
  mmu_->for_each_root([&](MmuPage* root) {
    if (root->role.invalid || root->is_mirror()) return;
    sync::RcuReadGuard g;
    for (TdpIter it(pool_, root, PgLevel::k4K, Gfn{0}, 0); it.valid; it.next())
      if (spte::is_leaf(it.old_spte, it.level)) out.push_back({it.gfn.v, lvl(it.level), it.old_spte});
  });
  return out;
}

int64_t PlainVm::pages(int level) {
  if (level < 1 || level > kMaxHugeLevel) return -1;
  return mmu_->stats().pages(level - 1);
}

std::vector<std::string> PlainVm::warnings() {
  std::vector<std::string> out;
  for (size_t i = 0; i < kSiteCount; i++)
    if (const uint64_t n = bugs_.hits(static_cast<Site>(i)))
      out.push_back(fmt::format("{} {} x{}", bug_kind_name(site_info(static_cast<Site>(i)).kind),
                                site_info(static_cast<Site>(i)).id, n));
  return out;
}

int64_t PlainVm::destroy() {
  if (destroyed_) return 0;
  destroyed_ = true;
  // kvm_destroy_vm(): no vCPU runs again, so nothing it cached can be used.
  for (int i = 0; i < hw().nr_vcpus(); i++) hw().flush_current(i);
  {
    sync::WriteGuard l(mmu_->mmu_lock());
    mmu_->kvm_tdp_mmu_zap_all();
  }
  for (auto& v : vcpus_) {
    if (MmuPage* root = v->root.exchange(nullptr)) mmu_->kvm_tdp_mmu_put_root(root);
    v->caches.free_all();
  }
  mmu_->kvm_mmu_uninit_tdp_mmu();
  return mmu_->stats().tdp_mmu_pages.load();
}

}  // namespace mirrormmu
