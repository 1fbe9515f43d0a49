// SPDX-License-Identifier: MIT
#include "workload/shared_life.h"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <random>
#include <thread>

#include "check/direct_checker.h"
#include "spte/spte.h"

namespace mirrormmu {

namespace {

constexpr int kSlot = 0;
constexpr uint64_t kPfnBase = 1ull << 24;  // host frames backing guest memory
constexpr uint64_t kMigratedBase = 2ull << 24;  // where the host moves a block
constexpr int kRetPfRetry = 1, kRetPfFixed = 5, kRetPfSpurious = 6;

class SharedLife {
 public:
  SharedLife(DirectMmu& mmu, const SharedLifeConfig& cfg)
      : mmu_(mmu), cfg_(cfg), npages_(static_cast<uint64_t>(cfg.gib * (1ull << 18))) {
    mmu_.host().set_base(kPfnBase);
    written_ = std::make_unique<std::atomic<uint64_t>[]>((npages_ + 63) / 64);
  }

  SharedLifeResult run() {
    const auto t0 = std::chrono::steady_clock::now();
    res_.mmu = mmu_.name();
    if (npages_ == 0) return fail("shared-life needs at least one page (--gib too small)"), res_;
    phases();
    const int64_t leaked = mmu_.destroy();
    res_.leaked_tables = leaked;
    if (ok() && leaked != 0)
      fail(fmt::format("leaked_page_tables: {} page-table pages still accounted after the VM was destroyed", leaked));
    if (ok()) {
      const auto w = mmu_.warnings();
      if (!w.empty()) fail("site_fired: " + w[0] + " (in teardown)");
    }
    if (ok() && !mmu_.hw().violation().empty()) fail(mmu_.hw().violation() + " (in teardown)");
    res_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    res_.faults = faults_.load();
    res_.spurious = spurious_.load();
    res_.retries = retries_.load();
    return res_;
  }

 private:
  // vCPU threads fail too: the first failure wins, and the flag lets the
  // others stop without reading the string.
  void fail(std::string why) {
    std::lock_guard g(mu_);
    if (!failed_.load(std::memory_order_relaxed)) res_.failure = std::move(why);
    res_.exit_code = 1;
    failed_.store(true, std::memory_order_release);
  }
  bool ok() const { return !failed_.load(std::memory_order_acquire); }

  // After a phase, with every vCPU stopped.
  bool check(const char* phase) {
    res_.ops++;
    if (!cfg_.check || !ok()) return ok();
    std::string e = mmu_.hw().violation();
    if (e.empty()) e = check_direct(mmu_, layout_);
    if (!e.empty()) fail(fmt::format("after {}: {}", phase, e));
    return ok();
  }

  // A guest access: the TLB, else the CPU's walk; an EPT violation when
  // the tables do not allow it, and the instruction runs again after KVM
  // handles it.
  void access(int v, uint64_t gfn, bool write) {
    if (write) written_[gfn / 64].fetch_or(1ull << (gfn % 64), std::memory_order_relaxed);
    // RET_PF_RETRY means another thread holds the fault off (an
    // invalidation in progress, a root being replaced): KVM re-enters and
    // faults again for as long as that lasts, which on a loaded machine can
    // be thousands of tries. Only retrying longer than any VMM step takes,
    // or faults that succeed without the access ever succeeding, is a
    // livelock.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (int tries = 0; tries < 1000;) {
      if (mmu_.guest_access(v, gfn, write) != HwAccess::EptViolation) return;
      const int r = mmu_.fault(v, gfn, write, cfg_.huge_pages ? 2 : 1);
      faults_.fetch_add(1, std::memory_order_relaxed);
      if (r == kRetPfFixed) {
        tries++;
        continue;
      }
      if (r == kRetPfSpurious) {
        spurious_.fetch_add(1, std::memory_order_relaxed);
        tries++;
        continue;
      }
      if (r == kRetPfRetry) {
        retries_.fetch_add(1, std::memory_order_relaxed);
        if (std::chrono::steady_clock::now() > deadline)
          return fail(fmt::format("fault_livelock: vCPU {} gfn {:#x} kept retrying for 20 s", v, gfn));
        std::this_thread::yield();
        continue;
      }
      return fail(fmt::format("fault_failed: vCPU {} gfn {:#x} {}: {}", v, gfn, write ? "write" : "read", r));
    }
    fail(fmt::format("fault_livelock: vCPU {} gfn {:#x} faulted 1000 times without the access succeeding", v, gfn));
  }

  // Each vCPU runs `fn(v, first, end)` over its share, on its own thread
  // (or in turn), while this thread runs `vmm`.
  void vcpus(const std::function<void(int, uint64_t, uint64_t)>& fn, const std::function<void()>& vmm = {}) {
    const uint64_t share = (npages_ + cfg_.vcpus - 1) / cfg_.vcpus;
    auto one = [&](int v) { fn(v, std::min(npages_, v * share), std::min(npages_, (v + 1) * share)); };
    if (!cfg_.threads) {
      // In turn: the VMM's part first, so what the vCPUs touch afterwards is
      // still mapped when the next phase begins.
      if (vmm) vmm();
      for (int v = 0; v < cfg_.vcpus; v++) one(v);
      return;
    }
    std::vector<std::thread> ts;
    for (int v = 0; v < cfg_.vcpus; v++) ts.emplace_back(one, v);
    if (vmm) vmm();
    for (auto& t : ts) t.join();
  }

  void clear_written() {
    for (uint64_t w = 0; w < (npages_ + 63) / 64; w++) written_[w].store(0, std::memory_order_relaxed);
  }
  std::vector<uint64_t> written() const {
    std::vector<uint64_t> out((npages_ + 63) / 64);
    for (size_t w = 0; w < out.size(); w++) out[w] = written_[w].load(std::memory_order_relaxed);
    return out;
  }

  void populate(const char* phase) {
    vcpus([&](int v, uint64_t b, uint64_t e) {
      for (uint64_t g = b; g < e && ok(); g++) access(v, g, true);
    });
    check(phase);
  }

  void phases() {
    if (int r = mmu_.memslot_set(kSlot, 0, npages_)) return fail(fmt::format("memslot_set: {}", r));
    layout_.slots[kSlot] = {0, npages_, false};
    populate("populate");
    if (!ok()) return;

    // Dirty logging: every collection must hold every page written since
    // the previous one.
    if (int r = mmu_.memslot_dirty_log(kSlot, true)) return fail(fmt::format("dirty_log on: {}", r));
    layout_.slots[kSlot].dirty_log = true;
    if (!check("dirty logging on")) return;
    std::vector<uint64_t> bits;
    mmu_.get_dirty_log(kSlot, bits);  // what populate left (not checked)
    clear_written();
    for (int i = 0; i < cfg_.iterations && ok(); i++) {
      vcpus([&](int v, uint64_t b, uint64_t e) {
        std::mt19937_64 rng(cfg_.seed * 1000003 + i * 131 + v);
        for (uint64_t g = b; g < e && ok(); g++)
          if (rng() & 1) access(v, g, true);
      });
      const auto w = written();
      if (int r = mmu_.get_dirty_log(kSlot, bits)) return fail(fmt::format("get_dirty_log: {}", r));
      res_.ops++;
      for (uint64_t x : bits) res_.dirty_pages += __builtin_popcountll(x);
      if (cfg_.check) {
        std::string e = check_dirty_log(layout_.slots[kSlot], w, bits);
        if (e.empty()) e = mmu_.check_translations(0, npages_, "KVM_GET_DIRTY_LOG");
        if (!e.empty()) return fail(fmt::format("dirty-log iteration {}: {}", i + 1, e));
      }
      clear_written();
      if (!check("dirty-log collection")) return;
    }
    if (int r = mmu_.memslot_dirty_log(kSlot, false)) return fail(fmt::format("dirty_log off: {}", r));
    layout_.slots[kSlot].dirty_log = false;
    if (!check("dirty logging off")) return;

    // The VMM disrupts while the vCPUs touch memory.
    std::mt19937_64 rng(cfg_.seed);
    const uint64_t zap_at = (rng() % npages_) & ~511ull;
    vcpus(
        [&](int v, uint64_t b, uint64_t e) {
          std::mt19937_64 r2(cfg_.seed * 7 + v);
          for (uint64_t n = 0; n < (e - b) && ok(); n++) access(v, b + r2() % (e - b), r2() & 1);
        },
        [&] {
          const uint64_t zap_end = std::min(npages_, zap_at + 4096);
          mmu_.zap_leafs(zap_at, zap_end);
          if (cfg_.check) {
            const std::string e = mmu_.check_translations(zap_at, zap_end, "kvm_zap_gfn_range()");
            if (!e.empty()) fail(e);
          }
          // The host migrates a 2M block (the THP moves whole) under the
          // vCPUs: the notifier zaps it, racing faults retry.
          const uint64_t move_at = (rng() % npages_) & ~511ull;
          const uint64_t move_n = std::min<uint64_t>(512, npages_ - move_at);
          mmu_.host_migrate(move_at, move_n, kMigratedBase + move_at);
          mmu_.zap_all_fast();
          if (cfg_.huge_pages)
            if (int r = mmu_.split_huge_pages(kSlot, 1, true)) fail(fmt::format("split_huge_pages: {}", r));
        });
    if (!check("zaps and splits racing vCPUs")) return;

    // The slot goes away and comes back; the vCPUs populate it again.
    if (int r = mmu_.memslot_delete(kSlot)) return fail(fmt::format("memslot_delete: {}", r));
    layout_.slots.erase(kSlot);
    // Userspace unmaps the slot's memory: every frame backing it is freed.
    for (uint64_t g = 0; g < npages_; g++) {
      const uint64_t pfn = mmu_.host().pfn(g);
      mmu_.hw().host_freed(pfn, pfn + 1, "the deletion of the memslot");
    }
    if (!check("memslot deleted")) return;
    if (!mmu_.leaves().empty()) return fail("leaf_after_delete: leaves remain after the memslot was deleted");
    if (int r = mmu_.memslot_set(kSlot, 0, npages_)) return fail(fmt::format("memslot_set again: {}", r));
    layout_.slots[kSlot] = {0, npages_, false};
    populate("re-populate");
  }

  DirectMmu& mmu_;
  SharedLifeConfig cfg_;
  uint64_t npages_;
  DirectLayout layout_;
  std::unique_ptr<std::atomic<uint64_t>[]> written_;
  std::atomic<uint64_t> faults_{0}, spurious_{0}, retries_{0};
  std::mutex mu_;
  std::atomic<bool> failed_{false};
  SharedLifeResult res_;

};

}  // namespace

SharedLifeResult run_shared_life(DirectMmu& mmu, const SharedLifeConfig& cfg) { return SharedLife(mmu, cfg).run(); }

}  // namespace mirrormmu
