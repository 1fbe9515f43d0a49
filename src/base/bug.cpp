// SPDX-License-Identifier: MIT
#include "base/bug.h"

namespace mirrormmu {

namespace {
constexpr SiteInfo kSites[] = {
#define MIRRORMMU_SITE_INFO(id, kind, text) {#id, BugKind::kind, text},
    MIRRORMMU_BUG_SITES(MIRRORMMU_SITE_INFO)
#undef MIRRORMMU_SITE_INFO
};
static_assert(std::size(kSites) == kSiteCount);
}  // namespace

const SiteInfo& site_info(Site s) { return kSites[static_cast<size_t>(s)]; }

std::string_view bug_kind_name(BugKind k) {
  switch (k) {
    case BugKind::KvmBugOn: return "KVM_BUG_ON";
    case BugKind::TdxBugOn: return "TDX_BUG_ON";
    case BugKind::Warn: return "WARN_ON_ONCE";
    case BugKind::Bug: return "BUG";
    case BugKind::Lockdep: return "lockdep";
  }
  return "?";
}

uint64_t BugTracker::total_hits() const {
  uint64_t n = 0;
  for (const auto& h : hits_) n += h.load(std::memory_order_relaxed);
  return n;
}

void BugTracker::hit(Site s) {
  hits_[static_cast<size_t>(s)].fetch_add(1, std::memory_order_relaxed);
  const BugKind k = site_info(s).kind;
  bool now_bugged = false;
  // A host BUG() would have crashed the machine; the model treats it as the
  // strongest form of KVM_BUG_ON so the run can still report and tear down.
  if (k == BugKind::KvmBugOn || k == BugKind::TdxBugOn || k == BugKind::Bug) {
    bool expected = false;
    if (bugged_.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
      first_bug_.store(s, std::memory_order_release);
      now_bugged = true;
    }
  }
  if (observer_) observer_->on_bug_site(s, now_bugged);
}

}  // namespace mirrormmu
