// SPDX-License-Identifier: GPL-2.0-only
#include "oracle/kernel_mmu.h"

#include <stdexcept>

namespace mirrormmu::oracle {

namespace {
KernelMmu* g_live = nullptr;
}

std::string KernelWarn::where() const {
  const auto slash = file.rfind('/');
  return (slash == std::string::npos ? file : file.substr(slash + 1)) + ":" + std::to_string(line);
}

KernelMmu::KernelMmu(int nr_vcpus) {
  if (g_live) throw std::logic_error("a kernel-MMU VM is already alive (one at a time)");
  kmmu_events ev{this, ev_change, ev_flush, ev_warn, ev_table_freed, ev_flush_current, ev_request_reload,
                 ev_host_pfn, ev_host_level};
  vm_ = kmmu_vm_create(&ev, nr_vcpus);
  if (!vm_) throw std::invalid_argument("kmmu_vm_create refused " + std::to_string(nr_vcpus) + " vCPUs");
  g_live = this;
}

KernelMmu::~KernelMmu() { destroy(); }

kmmu_masks KernelMmu::masks() {
  kmmu_masks m{};
  kmmu_get_masks(&m);
  return m;
}

// A BUG_ON inside the tree's code leaves its locks as they were: the VM is
// dead from then on, and every later operation is refused.
template <typename F>
auto KernelMmu::guarded(F&& f, decltype(f()) if_dead) {
  if (dead_) return if_dead;
  try {
    return f();
  } catch (const KernelBug& b) {
    dead_ = true;
    bug_ = b.what();
    return if_dead;
  }
}

int KernelMmu::memslot_set(int id, uint64_t base, uint64_t n, bool dirty_log) {
  return guarded([&] { return kmmu_memslot_set(vm_, id, base, n, dirty_log); }, -EIO);
}
int KernelMmu::memslot_delete(int id) { return guarded([&] { return kmmu_memslot_delete(vm_, id); }, -EIO); }
int KernelMmu::memslot_dirty_log(int id, bool on) {
  return guarded([&] { return kmmu_memslot_dirty_log(vm_, id, on); }, -EIO);
}
int KernelMmu::fault(int vcpu, uint64_t gfn, uint64_t pfn, bool write, bool exec, int host_level) {
  return guarded([&] { return kmmu_fault(vm_, vcpu, gfn, pfn, write, exec, host_level); }, -EIO);
}
bool KernelMmu::zap_leafs(uint64_t start, uint64_t end) {
  return guarded([&] { return kmmu_zap_leafs(vm_, start, end); }, false);
}
int KernelMmu::pre_fault_memory(int vcpu, uint64_t gfn, uint64_t npages, int host_level) {
  return guarded([&] { return kmmu_pre_fault_memory(vm_, vcpu, gfn, npages, host_level); }, -EIO);
}
void KernelMmu::invalidate_range_start(uint64_t start, uint64_t end) {
  guarded([&] { return kmmu_invalidate_range_start(vm_, start, end), 0; }, 0);
}
void KernelMmu::invalidate_range_end(uint64_t start, uint64_t end) {
  guarded([&] { return kmmu_invalidate_range_end(vm_, start, end), 0; }, 0);
}
void KernelMmu::zap_all() {
  guarded([&] { kmmu_zap_all(vm_); return 0; }, 0);
}
void KernelMmu::zap_all_unlocked() {
  guarded([&] { kmmu_zap_all_unlocked(vm_); return 0; }, 0);
}
void KernelMmu::zap_all_fast() {
  guarded([&] { kmmu_zap_all_fast(vm_); return 0; }, 0);
}
std::vector<uint64_t> KernelMmu::get_dirty_log(int id, uint64_t npages) {
  std::vector<uint64_t> bits((npages + 63) / 64);
  const int r = guarded([&] { return kmmu_get_dirty_log(vm_, id, bits.data(), bits.size()); }, -EIO);
  if (r) bits.clear();
  return bits;
}
int KernelMmu::clear_dirty_masked(int id, uint64_t off, uint64_t mask) {
  return guarded([&] { return kmmu_clear_dirty_masked(vm_, id, off, mask); }, -EIO);
}
int KernelMmu::split_huge_pages(int id, int target_level, bool shared) {
  return guarded([&] { return kmmu_split_huge_pages(vm_, id, target_level, shared); }, -EIO);
}
bool KernelMmu::age(uint64_t start, uint64_t end, bool test_only) {
  return guarded([&] { return kmmu_age(vm_, start, end, test_only); }, false);
}

int KernelMmu::set_nx_huge_pages(bool on) {
  return guarded([&] { return kmmu_set_nx_huge_pages(vm_, on); }, -EIO);
}

int KernelMmu::recover_nx_huge_pages(unsigned ratio) {
  return guarded([&] { return kmmu_recover_nx_huge_pages(vm_, ratio); }, -EIO);
}

uint64_t KernelMmu::lookup(int vcpu, uint64_t gfn, int* level) {
  return guarded([&] { return kmmu_lookup(vm_, vcpu, gfn, level); }, uint64_t{0});
}
int KernelMmu::vcpu_reload(int vcpu) {
  return guarded([&] { return kmmu_vcpu_reload(vm_, vcpu); }, -EIO);
}
kmmu_hw_walk KernelMmu::hw_walk(int vcpu, uint64_t gfn, int access) {
  kmmu_hw_walk w{};
  if (!dead_) kmmu_cpu_walk(vm_, vcpu, gfn, access, &w);
  return w;
}
std::vector<uint64_t> KernelMmu::peek_dirty_log(int id, uint64_t npages) {
  std::vector<uint64_t> bits((npages + 63) / 64);
  const int r = guarded([&] { return kmmu_peek_dirty_log(vm_, id, bits.data(), bits.size()); }, -EIO);
  if (r) bits.clear();
  return bits;
}

std::vector<KernelLeaf> KernelMmu::leaves() {
  std::vector<KernelLeaf> out;
  guarded(
      [&] {
        kmmu_for_each_leaf(vm_, &out, [](void* ctx, uint64_t gfn, int level, uint64_t spte) {
          static_cast<std::vector<KernelLeaf>*>(ctx)->push_back({gfn, level, spte});
        });
        return 0;
      },
      0);
  return out;
}

int64_t KernelMmu::pages(int level) { return kmmu_pages(vm_, level); }

int64_t KernelMmu::destroy() {
  if (!vm_) return 0;
  // A dead VM may hold mmu_lock forever: leak it rather than hang, and let
  // the next VM be created.
  if (dead_) kmmu_vm_abandon(vm_);
  const int64_t left = dead_ ? -1 : kmmu_vm_destroy(vm_);
  vm_ = nullptr;
  g_live = nullptr;
  return left;
}

void KernelMmu::abandon() {
  if (!vm_) return;
  kmmu_vm_abandon(vm_);
  vm_ = nullptr;
  g_live = nullptr;
}

void KernelMmu::ev_change(void* ctx, int as_id, uint64_t gfn, int level, uint64_t o, uint64_t n, bool shared) {
  auto* self = static_cast<KernelMmu*>(ctx);
  const KernelSpteChange c{as_id, gfn, level, o, n, shared};
  if (self->keep_changes) {
    std::lock_guard g(self->mu_);
    self->changes.push_back(c);
  }
  if (self->on_change) self->on_change(c);
}
void KernelMmu::ev_flush(void* ctx, uint64_t gfn, uint64_t npages) {
  auto* self = static_cast<KernelMmu*>(ctx);
  (npages ? self->flushes_range : self->flushes_all)++;
  if (self->on_flush) self->on_flush(gfn, npages);
}
void KernelMmu::ev_table_freed(void* ctx, uint64_t table) {
  auto* self = static_cast<KernelMmu*>(ctx);
  if (self->on_table_freed) self->on_table_freed(table);
}
void KernelMmu::ev_flush_current(void* ctx, int vcpu) {
  auto* self = static_cast<KernelMmu*>(ctx);
  if (self->on_flush_current) self->on_flush_current(vcpu);
}
uint64_t KernelMmu::ev_host_pfn(void* ctx, uint64_t gfn) {
  auto* self = static_cast<KernelMmu*>(ctx);
  return self->host_pfn ? self->host_pfn(gfn) : 0;
}
int KernelMmu::ev_host_level(void* ctx, uint64_t gfn) {
  auto* self = static_cast<KernelMmu*>(ctx);
  return self->host_level ? self->host_level(gfn) : 3;
}
void KernelMmu::ev_request_reload(void* ctx) {
  auto* self = static_cast<KernelMmu*>(ctx);
  if (self->on_request_reload) self->on_request_reload();
}
void KernelMmu::ev_warn(void* ctx, const char* cond, const char* file, int line, int kvm_bug) {
  auto* self = static_cast<KernelMmu*>(ctx);
  std::lock_guard g(self->mu_);
  self->warns.push_back({cond, file, line, kvm_bug != 0});
}

}  // namespace mirrormmu::oracle
