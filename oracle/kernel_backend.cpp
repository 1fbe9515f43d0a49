// SPDX-License-Identifier: GPL-2.0-only
// `--mmu kernel`: the DirectMmu of a plain VM whose MMU is the tree's own
// tdp_mmu.c. Registered when the binary is built with a kernel tree.
#include <fmt/format.h>

#include <map>

#include "oracle/kernel_backend.h"
#include "oracle/kernel_mmu.h"
#include "vm/direct_mmu.h"

namespace mirrormmu::oracle {

namespace {

class KernelDirectMmu : public DirectMmu {
 public:
  explicit KernelDirectMmu(int nr_vcpus) : DirectMmu(nr_vcpus), k_(nr_vcpus) {
    k_.keep_changes = false;
    // The tree's tracepoint, classified as the model's observer classifies
    // its own changes (a 6.12 tree has no mirror roots).
    k_.on_change = [this](const KernelSpteChange& c) {
      const PgLevel l = to_level(c.level);
      stats_.transitions.add({spte::kind_of(c.old_spte, l, 0), spte::kind_of(c.new_spte, l, 0), c.shared, false});
    };
    // Whole and ranged flushes in one counter, as the model counts them.
    k_.on_flush = [this](uint64_t gfn, uint64_t npages) {
      stats_.flushes.fetch_add(1, std::memory_order_relaxed);
      if (npages)
        hw().flush_range(gfn, npages);
      else
        hw().flush_all();
    };
    k_.on_table_freed = [this](uint64_t table) { hw().table_freed(table); };
    k_.on_flush_current = [this](int vcpu) { hw().flush_current(vcpu); };
    k_.on_request_reload = [this] { hw().request_reload_all_and_wait(); };
    k_.host_pfn = [this](uint64_t gfn) { return host().pfn(gfn); };
    k_.host_level = [this](uint64_t gfn) { return host().level(gfn); };
  }
  std::string name() const override { return "kernel " + KernelMmu::tree_version(); }
  int memslot_set(int id, uint64_t base, uint64_t n) override {
    const int r = k_.memslot_set(id, base, n);
    if (!r) slot_sizes_[id] = n;
    return r;
  }
  int memslot_delete(int id) override {
    slot_sizes_.erase(id);
    return k_.memslot_delete(id);
  }
  int memslot_dirty_log(int id, bool on) override { return k_.memslot_dirty_log(id, on); }
  int fault(int vcpu, uint64_t gfn, bool write, int host_level) override {
    return k_.fault(vcpu, gfn, KernelMmu::kHostPfn, write, false, host_level);
  }
  int exec_fault(int vcpu, uint64_t gfn, int host_level) override {
    return k_.fault(vcpu, gfn, KernelMmu::kHostPfn, false, true, host_level);
  }
  int recover_nx_huge_pages(unsigned ratio) override { return k_.recover_nx_huge_pages(ratio); }
  int set_nx_huge_pages(bool on) override { return k_.set_nx_huge_pages(on); }
  int pre_fault_memory(int vcpu, uint64_t gfn, uint64_t npages) override {
    return k_.pre_fault_memory(vcpu, gfn, npages, kMaxHugeLevel);
  }
  void invalidate_range_start(uint64_t start, uint64_t end) override { k_.invalidate_range_start(start, end); }
  void invalidate_range_end(uint64_t start, uint64_t end) override { k_.invalidate_range_end(start, end); }
  bool age(uint64_t start, uint64_t end, bool test_only) override { return k_.age(start, end, test_only); }
  bool zap_leafs(uint64_t start, uint64_t end) override { return k_.zap_leafs(start, end); }
  void zap_all_fast() override { k_.zap_all_fast(); }
  int get_dirty_log(int id, std::vector<uint64_t>& bits) override {
    bits = k_.get_dirty_log(id, slot_pages(id));
    return bits.empty() ? -ENOENT : 0;
  }
  int split_huge_pages(int id, int target_level, bool shared) override {
    return k_.split_huge_pages(id, target_level, shared);
  }
  uint64_t lookup(int vcpu, uint64_t gfn, int* level) override { return k_.lookup(vcpu, gfn, level); }
  int peek_dirty_log(int id, std::vector<uint64_t>& bits) override {
    bits = k_.peek_dirty_log(id, slot_pages(id));
    return bits.empty() ? -ENOENT : 0;
  }
  std::vector<DirectLeaf> leaves() override {
    std::vector<DirectLeaf> out;
    for (const auto& l : k_.leaves()) out.push_back({l.gfn, l.level, l.spte});
    return out;
  }
  int64_t pages(int level) override { return k_.pages(level); }
  std::vector<std::string> warnings() override {
    std::vector<std::string> out;
    for (const auto& w : k_.warns) out.push_back(fmt::format("{} {} at {}", w.kvm_bug ? "KVM_BUG_ON" : "WARN", w.cond, w.where()));
    if (k_.dead()) out.push_back(k_.bug());
    return out;
  }
  int64_t destroy() override {
    // kvm_destroy_vm(): no vCPU runs again, so nothing it cached can be used.
    for (int i = 0; i < hw().nr_vcpus(); i++) hw().flush_current(i);
    return k_.destroy();
  }
  void abandon() override { k_.abandon(); }
  HwWalk walk(int vcpu, uint64_t gfn, WalkFor why) override {
    const kmmu_hw_walk k = k_.hw_walk(vcpu, gfn, static_cast<int>(why));
    HwWalk w;
    w.leaf = k.leaf;
    w.writable = k.writable;
    w.dirty = k.dirty;
    w.executable = k.executable;
    w.level = k.level;
    w.pfn = k.pfn;
    w.ntables = k.ntables;
    for (int i = 0; i < k.ntables; i++) w.tables[i] = k.tables[i];
    return w;
  }
  int reload_root(int vcpu) override { return k_.vcpu_reload(vcpu); }

 private:
  uint64_t slot_pages(int id) {
    auto it = slot_sizes_.find(id);
    return it == slot_sizes_.end() ? 0 : it->second;
  }
  KernelMmu k_;
  std::map<int, uint64_t> slot_sizes_;
};

}  // namespace

void register_kernel_mmu() {
  register_direct_mmu("kernel", [](int n) -> std::unique_ptr<DirectMmu> { return std::make_unique<KernelDirectMmu>(n); });
}

}  // namespace mirrormmu::oracle
