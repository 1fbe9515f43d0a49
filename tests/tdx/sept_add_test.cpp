// SPDX-License-Identifier: MIT
// TDH.MEM.SEPT.ADD, TDH.MEM.PAGE.ADD and TDH.MEM.SEPT.RD.
#include "tdx/tdx_fixture.h"

namespace mirrormmu::tdx::test {
namespace {

class SeptAddTest : public TdxTest {
 protected:
  void SetUp() override { build_td(); }
};

TEST_F(SeptAddTest, ParentsFirstBuildsAPath) {
  const uint64_t gpa = 5 * k1G + 7 * k2M;
  uint64_t children = td.chldcnt();
  for (int l = 3; l >= 1; --l) {
    const Pfn p = page(PageOwner::SeptPage);
    const Ret r = td.tdh_mem_sept_add(align_down(gpa, l), l, p);
    ASSERT_EQ(r.status, TDX_SUCCESS) << l;
    EXPECT_EQ(td.pamt_type(p), PamtType::Ept);
    EXPECT_EQ(td.chldcnt(), ++children);
    const auto e = td.read_entry(gpa, l);
    EXPECT_EQ(e.state, SeptState::NlMapped);
    EXPECT_EQ(e.pfn, p);
    EXPECT_EQ(e.gpa, align_down(gpa, l));
  }
  // The new PT is all FREE: level-0 reads reach it and find nothing.
  const Ret rd = td.tdh_mem_sept_rd(gpa & ~(k4K - 1), 0);
  EXPECT_EQ(rd.status, TDX_SUCCESS);
  EXPECT_EQ(rd.level_state, 0u);
}

TEST_F(SeptAddTest, ChildBeforeParentFailsTheWalk) {
  const Pfn p = page(PageOwner::SeptPage);
  Ret r;
  EXPECT_EQ(unchanged([&] { return r = td.tdh_mem_sept_add(0, 1, p); }), rcx(TDX_EPT_WALK_FAILED));
  EXPECT_EQ(r.level_state & 0x7, 3u);
  EXPECT_EQ(td.pamt_type(p), PamtType::Nda);
}

TEST_F(SeptAddTest, RootLevelEntryIsAllowed) {
  EXPECT_EQ(td.tdh_mem_sept_add(2 * k512G, 3, page(PageOwner::SeptPage)).status, TDX_SUCCESS);
  EXPECT_EQ(state(2 * k512G, 3), SeptState::NlMapped);
}

TEST_F(SeptAddTest, EntryAlreadyNlMapped) {
  link(0, 0);
  const Pfn p = page(PageOwner::SeptPage);
  Ret r;
  EXPECT_EQ(unchanged([&] { return r = td.tdh_mem_sept_add(0, 1, p); }), rcx(TDX_EPT_ENTRY_STATE_INCORRECT));
  EXPECT_EQ(r.level_state, 1u | (0x84u << 8));
  EXPECT_EQ(r.entry & 0x7, 0x7u);  // non-leaf: RWX, HPA hidden
  EXPECT_EQ(r.entry & ~0xFFFull, 0u);
}

TEST_F(SeptAddTest, EntryIsALeaf) {
  const Pfn big = aug(4 * k2M, 1);  // 2M PENDING leaf at level 1
  const Pfn p = page(PageOwner::SeptPage);
  Ret r;
  EXPECT_EQ(unchanged([&] { return r = td.tdh_mem_sept_add(4 * k2M, 1, p); }), rcx(TDX_EPT_ENTRY_STATE_INCORRECT));
  EXPECT_EQ(r.level_state, 1u | (0x02u << 8));
  EXPECT_EQ(r.entry & ~0xFFFull, big.hpa());  // leaves show their HPA
}

TEST_F(SeptAddTest, NewPageOutOfRange) {
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_sept_add(0, 3, Pfn{pool.size()}); }),
            r8(TDX_OPERAND_ADDR_RANGE_ERROR));
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_sept_add(0, 3, kInvalidPfn); }), r8(TDX_OPERAND_ADDR_RANGE_ERROR));
}

TEST_F(SeptAddTest, NewPageNotFree) {
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_sept_add(0, 3, tdcs[1]); }), r8(TDX_PAGE_METADATA_INCORRECT));
  link(0, 2);
  // An S-EPT page already in the tree cannot be added twice.
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_sept_add(k1G, 2, sept_pages[0]); }),
            r8(TDX_PAGE_METADATA_INCORRECT));
}

TEST_F(SeptAddTest, StateCheckPrecedesPageCheck) {
  link(0, 2);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_sept_add(0, 3, Pfn{pool.size()}); }),
            rcx(TDX_EPT_ENTRY_STATE_INCORRECT));
}

TEST_F(SeptAddTest, AllowedWhileRunnable) {
  ASSERT_EQ(td.tdh_mr_finalize(), TDX_SUCCESS);
  link(3 * k1G, 0);
  EXPECT_EQ(state(3 * k1G, 1), SeptState::NlMapped);
}

TEST_F(SeptAddTest, SeptRdReportsEachLevel) {
  link(0, 0);
  ASSERT_EQ(td.tdh_mem_page_add(0, 0, page(PageOwner::GuestPrivate), page(PageOwner::HostSource)).status,
            TDX_SUCCESS);
  EXPECT_EQ(td.tdh_mem_sept_rd(0, 3).level_state, 3u | (0x84u << 8));
  EXPECT_EQ(td.tdh_mem_sept_rd(0, 1).level_state, 1u | (0x84u << 8));
  const Ret r = td.tdh_mem_sept_rd(0, 0);
  EXPECT_EQ(r.status, TDX_SUCCESS);
  EXPECT_EQ(r.level_state, 0x04u << 8);
  EXPECT_EQ(r.entry & 0x7, 0x7u);  // MAPPED: RWX
}

// ---- PAGE.ADD --------------------------------------------------------------------

class PageAddTest : public SeptAddTest {
 protected:
  void SetUp() override {
    SeptAddTest::SetUp();
    link(kGpa);
  }
  static constexpr uint64_t kGpa = 0x12345000;
};

TEST_F(PageAddTest, MapsMeasuredPage) {
  const Pfn hpa = page(PageOwner::GuestPrivate);
  const uint64_t before = td.chldcnt();
  ASSERT_EQ(td.tdh_mem_page_add(kGpa, 0, hpa, page(PageOwner::HostSource)).status, TDX_SUCCESS);
  EXPECT_EQ(state(kGpa, 0), SeptState::Mapped);
  EXPECT_EQ(td.read_entry(kGpa, 0).pfn, hpa);
  EXPECT_EQ(td.pamt_type(hpa), PamtType::Reg);
  EXPECT_EQ(td.chldcnt(), before + 1);
}

TEST_F(PageAddTest, OnlyBeforeFinalize) {
  ASSERT_EQ(td.tdh_mr_finalize(), TDX_SUCCESS);
  const Pfn hpa = page(PageOwner::GuestPrivate);
  const Pfn src = page(PageOwner::HostSource);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_add(kGpa, 0, hpa, src); }), TDX_OP_STATE_INCORRECT);
}

TEST_F(PageAddTest, EntryNotFree) {
  ASSERT_EQ(td.tdh_mem_page_add(kGpa, 0, page(PageOwner::GuestPrivate), page(PageOwner::HostSource)).status,
            TDX_SUCCESS);
  const Pfn hpa = page(PageOwner::GuestPrivate);
  const Pfn src = page(PageOwner::HostSource);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_add(kGpa, 0, hpa, src); }), rcx(TDX_EPT_ENTRY_STATE_INCORRECT));
  EXPECT_EQ(td.pamt_type(hpa), PamtType::Nda);
}

TEST_F(PageAddTest, SourceInvalid) {
  const Pfn hpa = page(PageOwner::GuestPrivate);
  const Status r9 = with_operand(TDX_OPERAND_INVALID, Operand::R9);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_add(kGpa, 0, hpa, Pfn{pool.size()}); }), r9);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_add(kGpa, 0, hpa, tdcs[0]); }), r9);  // module-owned
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_add(kGpa, 0, hpa, kInvalidPfn); }), r9);
}

TEST_F(PageAddTest, TargetChecks) {
  const Pfn src = page(PageOwner::HostSource);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_add(kGpa, 0, Pfn{pool.size() + 1}, src); }),
            r8(TDX_OPERAND_ADDR_RANGE_ERROR));
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_add(kGpa, 0, sept_pages[0], src); }),
            r8(TDX_PAGE_METADATA_INCORRECT));
}

TEST_F(PageAddTest, LevelMustBeZero) {
  const Pfn hpa = page(PageOwner::GuestPrivate);
  const Pfn src = page(PageOwner::HostSource);
  EXPECT_EQ(unchanged([&] { return td.tdh_mem_page_add(align_down(kGpa, 1), 1, hpa, src); }),
            rcx(TDX_OPERAND_INVALID));
}

TEST_F(PageAddTest, WalkFailsWithoutPageTable) {
  const Pfn hpa = page(PageOwner::GuestPrivate);
  const Pfn src = page(PageOwner::HostSource);
  Ret r;
  EXPECT_EQ(unchanged([&] { return r = td.tdh_mem_page_add(kGpa + k2M, 0, hpa, src); }),
            rcx(TDX_EPT_WALK_FAILED));
  EXPECT_EQ(r.level_state, 1u);  // the PD entry for the next 2M is FREE
}

}  // namespace
}  // namespace mirrormmu::tdx::test
