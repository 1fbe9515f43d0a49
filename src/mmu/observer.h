// SPDX-License-Identifier: MIT
// What the MMU tells an observer (the checker, the event trace). The MMU
// calls these only through a pointer that is null unless someone watches, so
// a run without a checker pays one predictable branch per change.
#pragma once

#include <cstdint>

#include "base/types.h"
#include "mmu/external_ops.h"

namespace mirrormmu {

struct SpteChange {
  Gfn gfn;
  PgLevel level;
  uint64_t old_spte;
  uint64_t new_spte;
  bool shared;  // under the shared (read) mmu_lock
  bool mirror;  // in a mirror root
};

class MmuObserver {
 public:
  virtual ~MmuObserver() = default;
  virtual void on_spte_changed(const SpteChange& c) = 0;
  virtual void on_external_hook(HookKind kind, Gfn gfn, PgLevel level, int ret) = 0;
  // kvm_flush_remote_tlbs() (npages 0) or kvm_flush_remote_tlbs_range().
  virtual void on_tlb_flush(Gfn start, uint64_t npages) {}
  // A page-table page goes back to the pool (after its grace period).
  virtual void on_table_freed(Pfn table) {}
  // An exclusive write replaced `actual`, not the `expected` value its
  // caller read: a lockless writer's bits in between are lost (and the
  // change handler was told the stale value). Only seen while observed.
  virtual void on_lost_update(Gfn gfn, PgLevel level, uint64_t expected, uint64_t actual, uint64_t new_spte) {}
  // Every call of __handle_changed_spte() that changes a value, with what it
  // returned: a design that refuses a transition says so here, and sites hit
  // while the change is handled can be charged to it (TdpMmu::current_change()).
  virtual void on_spte_change_result(const SpteChange& c, int ret) {}
  // The VM changed what the gfns [start, start + npages) may map: memslots,
  // private/shared attributes, guest_memfd backing. Told by the VM, not the
  // MMU (the MMU's own changes come through on_spte_changed).
  virtual void on_gfn_range_changed(Gfn start, uint64_t npages) {}
  // The fault path's two tracepoints: what a fault asked for, after the
  // huge-page adjustment (trace_kvm_mmu_spte_requested), and the leaf it
  // installed (trace_kvm_mmu_set_spte).
  virtual void on_spte_requested(Gfn gfn, Pfn pfn, PgLevel goal_level) {}
  virtual void on_set_spte(Gfn gfn, PgLevel level, const uint64_t* sptep, uint64_t spte) {}
};

// The CPUs behind the direct root, as the MMU reaches them: the remote
// flushes it requests and the page-table pages it gives back. Not an
// observer: the VM that owns the hardware always listens, whoever else
// watches the MMU.
class RemoteTlb {
 public:
  virtual ~RemoteTlb() = default;
  // kvm_flush_remote_tlbs() (npages 0) or kvm_flush_remote_tlbs_range().
  virtual void flush(Gfn start, uint64_t npages) = 0;
  // A page-table page goes back to the pool (after its grace period).
  virtual void table_freed(Pfn table) = 0;
};

}  // namespace mirrormmu
