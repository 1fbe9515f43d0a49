// SPDX-License-Identifier: MIT
// Shared fixture for the TDX module tests: a pool, a module, helpers that
// build a TD the way KVM does, and a snapshot of everything a SEAMCALL may
// change so a test can assert that a failed call changed nothing.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <ostream>
#include <tuple>
#include <vector>

#include "mem/pfn_pool.h"
#include "tdx/module.h"

namespace mirrormmu::tdx::test {

inline constexpr uint64_t k4K = 1ull << 12;
inline constexpr uint64_t k2M = 1ull << 21;
inline constexpr uint64_t k1G = 1ull << 30;
inline constexpr uint64_t k512G = 1ull << 39;
inline constexpr uint16_t kHkid = 7;

constexpr Status rcx(Status base) { return with_operand(base, Operand::RCX); }
constexpr Status r8(Status base) { return with_operand(base, Operand::R8); }

inline Status status_of(Status s) { return s; }
inline Status status_of(const Ret& r) { return r.status; }

struct Snapshot {
  std::vector<std::tuple<uint64_t, int, SeptState, uint64_t>> entries;
  std::vector<PamtType> pamt;
  uint64_t chldcnt = 0;
  uint64_t epoch = 0;
  OpState op_state = OpState::Uninitialized;
  Lifecycle lifecycle = Lifecycle::None;
  bool hkid_assigned = false;
  bool operator==(const Snapshot&) const = default;

  friend void PrintTo(const Snapshot& s, std::ostream* os) {
    *os << "{" << s.entries.size() << " entries, chldcnt " << s.chldcnt << ", epoch " << s.epoch << ", "
        << op_state_name(s.op_state) << ", " << lifecycle_name(s.lifecycle) << "}";
  }
};

class TdxTest : public ::testing::Test {
 protected:
  explicit TdxTest(ModuleConfig cfg = {}, uint64_t npages = 8192)
      : pool(npages), td(pool, cfg, &inject) {}

  Pfn page(PageOwner owner = PageOwner::TdControl) {
    const Pfn p = pool.alloc(owner);
    EXPECT_TRUE(p.valid());
    return p;
  }

  // TDH.MNG.CREATE, KEY.CONFIG, ADDCX x tdcs_pages, MNG.INIT.
  void create_td() {
    tdr = page();
    ASSERT_EQ(td.tdh_mng_create(tdr, kHkid), TDX_SUCCESS);
    ASSERT_EQ(td.tdh_mng_key_config(), TDX_SUCCESS);
    for (int i = 0; i < td.config().tdcs_pages; ++i) {
      const Pfn p = page();
      tdcs.push_back(p);
      ASSERT_EQ(td.tdh_mng_addcx(p), TDX_SUCCESS);
    }
    ASSERT_EQ(td.tdh_mng_init(), TDX_SUCCESS);
  }

  void add_vcpu(int id) {
    const Pfn tdvpr = page();
    vcpu_pages.push_back(tdvpr);
    ASSERT_EQ(td.tdh_vp_create(id, tdvpr), TDX_SUCCESS);
    for (int i = 0; i < td.config().tdvpx_pages; ++i) {
      const Pfn p = page();
      vcpu_pages.push_back(p);
      ASSERT_EQ(td.tdh_vp_addcx(id, p), TDX_SUCCESS);
    }
    ASSERT_EQ(td.tdh_vp_init(id), TDX_SUCCESS);
  }

  // A built TD with vCPU 0, not yet finalized.
  void build_td() {
    create_td();
    add_vcpu(0);
  }

  // A RUNNABLE TD with vCPU 0.
  void runnable_td() {
    build_td();
    ASSERT_EQ(td.tdh_mr_finalize(), TDX_SUCCESS);
  }

  static uint64_t align_down(uint64_t gpa, int level) {
    return gpa & ~((k4K << (9 * level)) - 1);
  }

  // SEPT.ADD every missing table from the root down to the one holding the
  // level-`to_level` entry for gpa, parents first.
  void link(uint64_t gpa, int to_level = 0) {
    const int root = td.config().sept_levels - 1;
    for (int l = root; l > to_level; --l) {
      const uint64_t base = align_down(gpa, l);
      if (td.read_entry(base, l).state != SeptState::Free) continue;
      const Pfn p = page(PageOwner::SeptPage);
      sept_pages.push_back(p);
      ASSERT_EQ(td.tdh_mem_sept_add(base, l, p).status, TDX_SUCCESS) << "level " << l;
    }
  }

  // AUG a 4K page at gpa (tables linked as needed); returns its frame.
  Pfn aug(uint64_t gpa, int level = 0) {
    link(gpa, level);
    const Pfn p = level == 0 ? page(PageOwner::GuestPrivate) : pool.alloc_run_2m(PageOwner::GuestPrivate);
    EXPECT_EQ(td.tdh_mem_page_aug(gpa, level, p).status, TDX_SUCCESS);
    return p;
  }

  // AUG then ACCEPT from vCPU 0 (entered and left around the accept).
  Pfn map_accepted(uint64_t gpa, int level = 0) {
    const Pfn p = aug(gpa, level);
    EXPECT_EQ(td.tdh_vp_enter(0), TDX_SUCCESS);
    EXPECT_EQ(td.tdg_mem_page_accept(0, gpa, level).outcome, AcceptResult::Outcome::Accepted);
    td.td_exit(0);
    return p;
  }

  // BLOCK, TRACK (no vCPU in guest): the entry can now be removed.
  void block_and_track(uint64_t gpa, int level) {
    ASSERT_EQ(td.tdh_mem_range_block(gpa, level).status, TDX_SUCCESS);
    ASSERT_EQ(td.tdh_mem_track(), TDX_SUCCESS);
  }

  // HKID release as KVM does it: VP.FLUSH each vCPU, VPFLUSHDONE, CACHE.WB,
  // KEY.FREEID.
  void release_hkid(std::initializer_list<int> vcpus = {0}) {
    for (int v : vcpus) ASSERT_EQ(td.tdh_vp_flush(v), TDX_SUCCESS);
    ASSERT_EQ(td.tdh_mng_vpflushdone(), TDX_SUCCESS);
    ASSERT_EQ(td.tdh_phymem_cache_wb(false), TDX_SUCCESS);
    ASSERT_EQ(td.tdh_mng_key_freeid(), TDX_SUCCESS);
  }

  Snapshot snapshot() const {
    Snapshot s;
    td.for_each_entry([&](const TdxModule::EntryView& e) {
      s.entries.emplace_back(e.gpa, e.tdx_level, e.state, e.pfn.v);
    });
    s.pamt.reserve(pool.size());
    for (uint64_t i = 0; i < pool.size(); ++i) s.pamt.push_back(td.pamt_type(Pfn{i}));
    s.chldcnt = td.chldcnt();
    s.epoch = td.td_epoch();
    s.op_state = td.op_state();
    s.lifecycle = td.lifecycle();
    s.hkid_assigned = td.hkid_assigned();
    return s;
  }

  // Runs a call expected to fail and checks it left the module untouched.
  template <class Fn>
  Status unchanged(Fn&& fn) {
    const Snapshot before = snapshot();
    const auto r = fn();
    EXPECT_EQ(snapshot(), before) << "a failed call changed module state";
    return status_of(r);
  }

  SeptState state(uint64_t gpa, int level) const { return td.read_entry(gpa, level).state; }

  FaultInjector inject;
  PfnPool pool;
  TdxModule td;
  Pfn tdr;
  std::vector<Pfn> tdcs;
  std::vector<Pfn> vcpu_pages;
  std::vector<Pfn> sept_pages;
};

}  // namespace mirrormmu::tdx::test
