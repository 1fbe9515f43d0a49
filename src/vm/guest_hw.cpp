// SPDX-License-Identifier: MIT
#include "vm/guest_hw.h"

#include <fmt/format.h>

#include "sync/sched.h"

namespace mirrormmu {

// Every operation on the caches names them (sched_touch): a guest access, a
// flush and a vCPU's entry are ordered against each other for partial-order
// reduction, whichever scheduling point the step that does them began at.
GuestHw::GuestHw(int nr_vcpus) {
  for (int i = 0; i < std::max(nr_vcpus, 1); i++) vcpus_.push_back(std::make_unique<Vcpu>());
}

bool GuestHw::tlb_hit(int vcpu, uint64_t gfn, bool write, bool exec) {
  sync::sched_touch(this);
  Vcpu& v = *vcpus_[vcpu];
  std::lock_guard g(v.mu);
  auto it = v.entries.find(gfn);
  return it != v.entries.end() && it->second.leaf && (!write || (it->second.writable && it->second.dirty)) &&
         (!exec || it->second.executable);
}

void GuestHw::fill(int vcpu, uint64_t gfn, const HwWalk& w) {
  sync::sched_touch(this);
  Vcpu& v = *vcpus_[vcpu];
  std::lock_guard g(v.mu);
  if (v.flush_gen != v.entered_gen) return;
  Entry& e = v.entries[gfn];
  e.leaf = w.leaf;
  e.pfn = w.pfn;
  e.writable = w.writable;
  e.dirty = w.dirty;
  e.executable = w.executable;
  e.tables = w.tables;
  e.ntables = w.ntables;
}

void GuestHw::flush_all() {
  sync::sched_touch(this);
  for (auto& v : vcpus_) {
    std::lock_guard g(v->mu);
    v->entries.clear();
    v->flush_gen++;
  }
  wait_for_guests();
}

// A ranged flush promises only that range: the translations of its gfns and
// the paging-structure entries their walks used. A walk cached for a gfn
// outside it survives, even if it went through the same tables.
void GuestHw::flush_range(uint64_t gfn, uint64_t npages) {
  sync::sched_touch(this);
  for (auto& v : vcpus_) {
    std::lock_guard g(v->mu);
    std::erase_if(v->entries, [&](const auto& kv) { return kv.first >= gfn && kv.first - gfn < npages; });
    v->flush_gen++;
  }
  wait_for_guests();
}

void GuestHw::flush_current(int vcpu) {
  sync::sched_touch(this);
  Vcpu& v = *vcpus_[vcpu];
  std::lock_guard g(v.mu);
  v.entries.clear();
}

template <class Fn>
void GuestHw::for_each_usable(Fn&& fn) const {
  for (size_t i = 0; i < vcpus_.size(); i++) {
    if (vcpus_[i]->reload.load()) continue;
    std::lock_guard g(vcpus_[i]->mu);
    for (const auto& [gfn, e] : vcpus_[i]->entries)
      if (fn(static_cast<int>(i), gfn, e)) return;
  }
}

std::vector<GuestHw::Cached> GuestHw::translations(uint64_t start, uint64_t end) const {
  std::vector<Cached> out;
  for_each_usable([&](int v, uint64_t gfn, const Entry& e) {
    if (e.leaf && gfn >= start && gfn < end) out.push_back({v, gfn, e.pfn, e.writable});
    return false;
  });
  return out;
}

void GuestHw::host_freed(uint64_t pfn_start, uint64_t pfn_end, const std::string& why) {
  sync::sched_touch(this);
  std::string found;
  for_each_usable([&](int v, uint64_t gfn, const Entry& e) {
    if (!e.leaf || e.pfn < pfn_start || e.pfn >= pfn_end) return false;
    found = fmt::format("tlb_use_after_free: vCPU {} still translates gfn {:#x} to pfn {:#x}{} after {} freed the page",
                        v, gfn, e.pfn, e.writable ? " (writable)" : "", why);
    return true;
  });
  if (!found.empty()) report(std::move(found));
}

void GuestHw::table_freed(uint64_t table) {
  sync::sched_touch(this);
  std::string found;
  for_each_usable([&](int v, uint64_t gfn, const Entry& e) {
    for (int t = 0; t < e.ntables; t++)
      if (e.tables[t] == table) {
        found = fmt::format(
            "tlb_table_freed: page table {:#x} (level {} of the walk of gfn {:#x}) freed while vCPU {}'s "
            "paging-structure cache still holds it",
            table, e.ntables - t, gfn, v);
        return true;
      }
    return false;
  });
  if (!found.empty()) report(std::move(found));
}

void GuestHw::report(std::string what) {
  std::lock_guard g(violation_mu_);
  if (violation_.empty()) violation_ = std::move(what);
}

std::string GuestHw::violation() const {
  std::lock_guard g(violation_mu_);
  return violation_;
}

// The order is vcpu_enter_guest()'s against kvm_make_all_cpus_request():
// the vCPU publishes IN_GUEST_MODE before it reads its requests, the
// requester publishes the request before it reads the mode. Sequentially
// consistent on both sides, one of them sees the other.
bool GuestHw::enter(int vcpu) {
  sync::sched_touch(this);
  Vcpu& v = *vcpus_[vcpu];
  {
    std::lock_guard g(v.mu);
    v.entered_gen = v.flush_gen;
  }
  v.entries_count.fetch_add(1);
  v.in_guest.store(true);
  if (!v.reload.load()) return true;
  // From here on the vCPU never runs on its old root again: what it cached
  // there is as good as gone (the load of the new one flushes it anyway).
  flush_current(vcpu);
  v.reload.store(false);
  exit(vcpu);
  return false;
}

void GuestHw::exit(int vcpu) {
  sync::sched_touch(this);
  Vcpu& v = *vcpus_[vcpu];
  v.in_guest.store(false);
  sync::wake_event(&v.in_guest);
}

void GuestHw::request_reload_all_and_wait() {
  sync::sched_touch(this);
  for (auto& v : vcpus_) v->reload.store(true);
  wait_for_guests();
}

void GuestHw::wait_for_guests() {
  sync::sched_touch(this);
  for (auto& v : vcpus_) {
    const uint64_t entry = v->entries_count.load();
    while (v->in_guest.load() && v->entries_count.load() == entry) sync::wait_event(&v->in_guest);
  }
}

}  // namespace mirrormmu
