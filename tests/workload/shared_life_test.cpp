// SPDX-License-Identifier: MIT
// shared-life on the model's plain VM, and the classic bug of each
// mechanism it exercises planted behind the DirectMmu interface: the
// checker or the dirty-log check must name it.
#include <gtest/gtest.h>

#include "check/direct_checker.h"
#include "vm/plain_vm.h"
#include "workload/shared_life.h"

namespace mirrormmu::test {
namespace {

// Forwards everything to a PlainVm; a test overrides the one call it breaks.
class Forward : public DirectMmu {
 public:
  Forward() : DirectMmu(2), inner_(PlainVmConfig{2}) { use_hw_of(inner_); }
  std::string name() const override { return "planted"; }
  int memslot_set(int id, uint64_t b, uint64_t n) override { return inner_.memslot_set(id, b, n); }
  int memslot_delete(int id) override { return inner_.memslot_delete(id); }
  int memslot_dirty_log(int id, bool on) override { return inner_.memslot_dirty_log(id, on); }
  int fault(int v, uint64_t g, bool w, int l) override { return inner_.fault(v, g, w, l); }
  int pre_fault_memory(int v, uint64_t g, uint64_t n) override { return inner_.pre_fault_memory(v, g, n); }
  void invalidate_range_start(uint64_t s, uint64_t e) override { inner_.invalidate_range_start(s, e); }
  void invalidate_range_end(uint64_t s, uint64_t e) override { inner_.invalidate_range_end(s, e); }
  bool age(uint64_t s, uint64_t e, bool t) override { return inner_.age(s, e, t); }
  bool zap_leafs(uint64_t s, uint64_t e) override { return inner_.zap_leafs(s, e); }
  void zap_all_fast() override { inner_.zap_all_fast(); }
  int get_dirty_log(int id, std::vector<uint64_t>& b) override { return inner_.get_dirty_log(id, b); }
  int split_huge_pages(int id, int l, bool s) override { return inner_.split_huge_pages(id, l, s); }
  uint64_t lookup(int v, uint64_t g, int* l) override { return inner_.lookup(v, g, l); }
  int peek_dirty_log(int id, std::vector<uint64_t>& b) override { return inner_.peek_dirty_log(id, b); }
  std::vector<DirectLeaf> leaves() override { return inner_.leaves(); }
  int64_t pages(int level) override { return inner_.pages(level); }
  std::vector<std::string> warnings() override { return inner_.warnings(); }
  int64_t destroy() override { return inner_.destroy(); }
  HwWalk walk(int v, uint64_t g, WalkFor why) override { return inner_.walk(v, g, why); }
  int reload_root(int v) override { return inner_.reload_root(v); }

 protected:
  PlainVm inner_;
};

SharedLifeConfig small(bool threads) {
  SharedLifeConfig c;
  c.gib = 0.02;
  c.vcpus = 2;
  c.threads = threads;
  return c;
}

TEST(SharedLife, RunsCleanOnTheModelInlineAndOnThreads) {
  for (const bool threads : {false, true})
    for (const bool huge : {false, true}) {
      PlainVm vm(PlainVmConfig{2});
      SharedLifeConfig c = small(threads);
      c.huge_pages = huge;
      const SharedLifeResult r = run_shared_life(vm, c);
      EXPECT_EQ(r.failure, "") << "threads " << threads << " huge " << huge;
      EXPECT_GT(r.faults, 0u);
      EXPECT_GT(r.dirty_pages, 0u) << "the dirty-log rounds logged nothing";
      EXPECT_EQ(r.leaked_tables, 0);
      EXPECT_GT(vm.stats().transitions.total(), 0u);
    }
}

// KVM_GET_DIRTY_LOG that hands back an empty bitmap: the pages the guest
// wrote are lost.
TEST(SharedLife, ALostDirtyLogIsCaught) {
  struct LosesTheLog : Forward {
    int get_dirty_log(int id, std::vector<uint64_t>& b) override {
      const int r = inner_.get_dirty_log(id, b);
      for (auto& w : b) w = 0;
      return r;
    }
  } vm;
  const SharedLifeResult r = run_shared_life(vm, small(false));
  EXPECT_NE(r.failure.find("lost_dirty_page"), std::string::npos) << r.failure;
  EXPECT_EQ(r.exit_code, 1);
}

// Enabling dirty logging without write-protecting the slot: writable
// leaves stay, and the guest writes through them without an exit.
TEST(SharedLife, DirtyLoggingThatForgetsToWriteProtectIsCaught) {
  struct NoWrprot : Forward {
    bool logging = false;
    int memslot_dirty_log(int id, bool on) override {
      logging = on;
      return 0;  // the flag is never handed to the MMU
    }
  } vm;
  const SharedLifeResult r = run_shared_life(vm, small(false));
  EXPECT_FALSE(r.failure.empty());
  EXPECT_TRUE(r.failure.find("writable_leaf_not_logged") != std::string::npos ||
              r.failure.find("lost_dirty_page") != std::string::npos)
      << r.failure;
}

// A memslot deletion that forgets to zap: leaves outlive their slot, and the
// vCPUs still translate to the frames userspace then frees.
TEST(SharedLife, ADeletionThatDoesNotZapIsCaught) {
  struct NoZapOnDelete : Forward {
    int memslot_delete(int) override { return 0; }
    int memslot_set(int id, uint64_t b, uint64_t n) override {
      const int r = inner_.memslot_set(id, b, n);
      return r == -EEXIST ? 0 : r;  // the "re-added" slot is the old one
    }
  } vm;
  const SharedLifeResult r = run_shared_life(vm, small(false));
  EXPECT_TRUE(r.failure.find("leaf_outside_memslot") != std::string::npos ||
              r.failure.find("tlb_use_after_free") != std::string::npos)
      << r.failure;
}

// Page stats that miss a level: the count no longer matches the tree.
TEST(SharedLife, PageStatsThatDriftAreCaught) {
  struct Drift : Forward {
    int64_t pages(int level) override { return inner_.pages(level) + (level == 1); }
  } vm;
  const SharedLifeResult r = run_shared_life(vm, small(false));
  EXPECT_NE(r.failure.find("page_stats"), std::string::npos) << r.failure;
}

// The dirty-log check itself, on hand-made bitmaps.
TEST(DirectChecker, ADirtyLogMissingAWrittenPageNamesIt) {
  DirectLayout::Slot s{0x100, 128, true};
  EXPECT_EQ(check_dirty_log(s, {0b1010, 0}, {0b1110, 0}), "");
  const std::string e = check_dirty_log(s, {0b1010, 1}, {0b1010, 0});
  EXPECT_NE(e.find("gfn 0x140"), std::string::npos) << e;
}

}  // namespace
}  // namespace mirrormmu::test
