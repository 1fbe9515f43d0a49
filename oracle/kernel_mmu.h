// SPDX-License-Identifier: GPL-2.0-only
// The kernel tree's own TDP MMU (direct root) as a C++ object: the oracle
// the model is compared with. Built only with -DMIRRORMMU_KERNEL_TREE=...
// (`make oracle`); see docs/oracle.md for what is the tree's and what is ours.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "oracle/bridge_cpp.h"
#include "oracle/kmmu.h"

namespace mirrormmu::oracle {

struct KernelSpteChange {
  int as_id;
  uint64_t gfn;
  int level;
  uint64_t old_spte, new_spte;
  bool shared;  // made under mmu_lock held for read
};

struct KernelWarn {
  std::string cond, file;
  int line;
  bool kvm_bug;
  std::string where() const;  // "tdp_mmu.c:512"
};

struct KernelLeaf {
  uint64_t gfn;
  int level;
  uint64_t spte;
};

class KernelMmu {
 public:
  // One at a time (the tree's WARNs carry no VM); throws std::logic_error
  // if another is alive.
  explicit KernelMmu(int nr_vcpus = 1);
  ~KernelMmu();
  KernelMmu(const KernelMmu&) = delete;
  KernelMmu& operator=(const KernelMmu&) = delete;

  static std::string tree_version() { return kmmu_tree_version(); }
  static kmmu_masks masks();

  int memslot_set(int id, uint64_t base_gfn, uint64_t npages, bool dirty_log = false);
  int memslot_delete(int id);
  int memslot_dirty_log(int id, bool on);
  int fault(int vcpu, uint64_t gfn, uint64_t pfn, bool write, bool exec = false, int host_level = 1);
  int pre_fault_memory(int vcpu, uint64_t gfn, uint64_t npages, int host_level = 1);
  bool zap_leafs(uint64_t start, uint64_t end);
  void invalidate_range_start(uint64_t start, uint64_t end);
  void invalidate_range_end(uint64_t start, uint64_t end);
  void zap_all();
  void zap_all_fast();
  void zap_all_unlocked();  // a planted bug: see kmmu_zap_all_unlocked
  std::vector<uint64_t> get_dirty_log(int id, uint64_t npages);
  int clear_dirty_masked(int id, uint64_t gfn_offset, uint64_t mask);
  int split_huge_pages(int id, int target_level, bool shared);
  bool age(uint64_t start, uint64_t end, bool test_only);
  int set_nx_huge_pages(bool on);
  int recover_nx_huge_pages(unsigned ratio);

  uint64_t lookup(int vcpu, uint64_t gfn, int* level);
  int vcpu_reload(int vcpu);
  kmmu_hw_walk hw_walk(int vcpu, uint64_t gfn, int access);
  std::vector<uint64_t> peek_dirty_log(int id, uint64_t npages);
  std::vector<KernelLeaf> leaves();
  int64_t pages(int level);
  // kvm_destroy_vm(); returns page-table pages still accounted afterwards.
  // The destructor does it if not called.
  int64_t destroy();
  // Forget the VM without freeing anything (see kmmu_vm_abandon).
  void abandon();

  // What the real code reported, in order. vCPU threads report
  // concurrently: the vectors are appended under a mutex, read them once
  // the threads are done. A long run turns keep_changes off and counts
  // through on_change (called on the reporting thread; must be thread-safe).
  bool keep_changes = true;
  std::vector<KernelSpteChange> changes;
  std::vector<KernelWarn> warns;
  std::atomic<uint64_t> flushes_all{0}, flushes_range{0};
  std::function<void(const KernelSpteChange&)> on_change;
  // Each flush request, on the flushing thread (npages 0: the whole VM).
  std::function<void(uint64_t gfn, uint64_t npages)> on_flush;
  // The hardware's side (see kmmu_events): a table page freed, a vCPU's
  // flush of its current context, the reload request of a fast zap.
  std::function<void(uint64_t table)> on_table_freed;
  std::function<void(int vcpu)> on_flush_current;
  std::function<void()> on_request_reload;
  // hva_to_pfn() for a fault given kHostPfn; unset, such a fault fails.
  std::function<uint64_t(uint64_t gfn)> host_pfn;
  std::function<int(uint64_t gfn)> host_level;  // unset: 1G
  static constexpr uint64_t kHostPfn = KMMU_PFN_FROM_HOST;
  bool dead() const { return dead_; }
  const std::string& bug() const { return bug_; }

 private:
  template <typename F>
  auto guarded(F&& f, decltype(f()) if_dead);
  static void ev_change(void* ctx, int as_id, uint64_t gfn, int level, uint64_t o, uint64_t n, bool shared);
  static void ev_flush(void* ctx, uint64_t gfn, uint64_t npages);
  static void ev_warn(void* ctx, const char* cond, const char* file, int line, int kvm_bug);
  static void ev_table_freed(void* ctx, uint64_t table);
  static void ev_flush_current(void* ctx, int vcpu);
  static void ev_request_reload(void* ctx);
  static uint64_t ev_host_pfn(void* ctx, uint64_t gfn);
  static int ev_host_level(void* ctx, uint64_t gfn);
  std::mutex mu_;
  kmmu_vm* vm_ = nullptr;
  bool dead_ = false;
  std::string bug_;
};

}  // namespace mirrormmu::oracle
