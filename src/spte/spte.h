// SPDX-License-Identifier: MIT
// The 64-bit SPTE, EPT flavour, as the TDP MMU encodes it.
//
// Bit 11 is the software "MMU-present" bit: it, and nothing else, says
// whether KVM considers an entry present. Non-present entries are
// SHADOW_NONPRESENT_VALUE (bit 63, EPT suppress-#VE) so a TD takes an EPT
// violation rather than a #VE; FROZEN_SPTE is that value plus a marker that
// no real SPTE can have, and is never "present".
#pragma once

#include <cstdint>

#include "base/types.h"

namespace mirrormmu::spte {

inline constexpr uint64_t kReadable = 1ull << 0;
inline constexpr uint64_t kWritable = 1ull << 1;   // PT_WRITABLE_MASK
inline constexpr uint64_t kExecutable = 1ull << 2;
inline constexpr uint64_t kRwx = kReadable | kWritable | kExecutable;  // VMX_EPT_RWX_MASK
inline constexpr uint64_t kMemTypeWb = 6ull << 3;  // EPT memory type WB
inline constexpr uint64_t kLarge = 1ull << 7;      // PT_PAGE_SIZE_MASK
inline constexpr uint64_t kAccessed = 1ull << 8;   // shadow_accessed_mask (EPT)
inline constexpr uint64_t kDirty = 1ull << 9;      // shadow_dirty_mask (EPT)
inline constexpr uint64_t kMmuPresent = 1ull << 11;  // SPTE_MMU_PRESENT_MASK
inline constexpr uint64_t kHostWritable = 1ull << 57;
inline constexpr uint64_t kMmuWritable = 1ull << 58;
inline constexpr uint64_t kSuppressVe = 1ull << 63;

inline constexpr uint64_t kNonPresent = kSuppressVe;  // SHADOW_NONPRESENT_VALUE
// FROZEN_SPTE as merged (spte.h since the REMOVED_SPTE rename): 0x5a0 sets
// bit 8, the EPT Accessed bit, which is harmless only because nothing reads
// A/D of a non-present SPTE. (0x498, without A/D bits, is from the unmerged
// "Free up A/D bits in FROZEN_SPTE" RFC of 2024; no design here uses it.)
inline constexpr uint64_t kFrozen = kNonPresent | 0x5a0;
static_assert((kFrozen & kMmuPresent) == 0, "FROZEN_SPTE must not be present");
static_assert((kFrozen & kRwx) == 0, "FROZEN_SPTE must not be readable (L1TF)");

inline constexpr int kMaxPhysBits = 52;
inline constexpr uint64_t kBaseAddrMask = ((1ull << kMaxPhysBits) - 1) & ~(kPageSize - 1);  // 51:12

// MMIO SPTEs: (spte & kMmioMask) == mmio_value, plus a generation and the gfn.
// For a TD the per-VM value is 0 (RWX clear and suppress-#VE clear), so the
// guest takes a #VE and makes a TDVMCALL; for a normal VM it is W+X without R,
// an EPT misconfiguration.
inline constexpr uint64_t kMmioMask = kRwx | kSuppressVe;
inline constexpr uint64_t kMmioValueVmx = kWritable | kExecutable;
inline constexpr uint64_t kMmioValueTdx = 0;
inline constexpr uint64_t kMmioGenLowShift = 3;   // gen bits 0-7 at 3..10 (bit 11 stays clear)
inline constexpr uint64_t kMmioGenLowMask = 0xffull << kMmioGenLowShift;
inline constexpr uint64_t kMmioGenHighShift = 52;  // gen bits 8-18 at 52..62
inline constexpr uint64_t kMmioGenHighMask = 0x7ffull << kMmioGenHighShift;

constexpr bool is_shadow_present(uint64_t s) { return (s & kMmuPresent) != 0; }
constexpr bool is_large(uint64_t s) { return (s & kLarge) != 0; }
// is_last_spte(): does not check presence, like the kernel's.
constexpr bool is_last(uint64_t s, PgLevel l) { return l == PgLevel::k4K || is_large(s); }
constexpr bool is_leaf(uint64_t s, PgLevel l) { return is_shadow_present(s) && is_last(s, l); }
constexpr bool is_nonleaf(uint64_t s, PgLevel l) { return is_shadow_present(s) && !is_last(s, l); }
constexpr bool is_frozen(uint64_t s) { return s == kFrozen; }
constexpr bool is_writable(uint64_t s) { return (s & kWritable) != 0; }
constexpr bool is_mmu_writable(uint64_t s) { return (s & kMmuWritable) != 0; }
constexpr bool is_dirty(uint64_t s) { return (s & kDirty) != 0; }
constexpr Pfn to_pfn(uint64_t s) { return Pfn{(s & kBaseAddrMask) >> kPageShift}; }
constexpr bool is_mmio(uint64_t s, uint64_t mmio_value) {
  return !is_shadow_present(s) && !is_frozen(s) && (s & kMmioMask) == mmio_value &&
         s != kNonPresent;
}

// spte_has_volatile_bits(): bits that may be set without mmu_lock, so an
// exclusive write over the entry must be an xchg or the update is lost:
// Writable, by fast_page_fault() on a write-protected but MMU-writable
// leaf; Accessed, by the CPU when it is clear; Dirty, by the CPU on a write
// through a writable leaf that lacks it.
constexpr bool has_volatile_bits(uint64_t s) {
  if (!is_shadow_present(s)) return false;
  if (!is_writable(s) && is_mmu_writable(s)) return true;
  return !(s & kAccessed) || (is_writable(s) && !is_dirty(s));
}

// make_nonleaf_spte(): the child table's address, RWX, and Accessed set.
constexpr uint64_t make_nonleaf(Pfn child) {
  return kMmuPresent | (child.hpa() & kBaseAddrMask) | kRwx | kAccessed | kSuppressVe;
}

struct LeafAttrs {
  bool writable = true;  // false: write-protected (dirty logging)
  bool dirty = false;
  // The host mapping allows writes (make_spte's host_writable). Without it
  // the leaf is not MMU-writable either: nothing may make it writable
  // without a fault that asks the host again.
  bool host_writable = true;
};

// make_spte() for a leaf. Mirror leaves are always RWX; TDX treats every
// private fault as a write.
constexpr uint64_t make_leaf(Pfn pfn, PgLevel level, LeafAttrs a = {}) {
  uint64_t s = kMmuPresent | (pfn.hpa() & kBaseAddrMask) | kReadable | kExecutable | kMemTypeWb | kAccessed |
               kSuppressVe;
  if (a.host_writable) s |= kHostWritable | kMmuWritable;
  if (level != PgLevel::k4K) s |= kLarge;
  if (a.writable && a.host_writable) s |= kWritable;
  if (a.dirty) s |= kDirty;
  return s;
}

constexpr uint64_t make_mmio(Gfn gfn, uint64_t mmio_value, uint64_t generation) {
  uint64_t s = mmio_value | (gfn.gpa() & kBaseAddrMask);
  s |= (generation << kMmioGenLowShift) & kMmioGenLowMask;
  s |= ((generation >> 8) << kMmioGenHighShift) & kMmioGenHighMask;
  return s;
}

// Small SPTE i of a split huge leaf (make_small_spte).
constexpr uint64_t make_small(uint64_t huge, PgLevel child_level, int index) {
  uint64_t s = huge & ~kBaseAddrMask;
  const Pfn base = to_pfn(huge);
  s |= (base + uint64_t(index) * pages_per_hpage(child_level)).hpa() & kBaseAddrMask;
  if (child_level == PgLevel::k4K) s &= ~kLarge;
  return s;
}

// What kind of value an entry holds, for classifying transitions.
enum class Kind : uint8_t { NonPresent, Leaf, NonLeaf, Frozen, Mmio };
constexpr Kind kind_of(uint64_t s, PgLevel l, uint64_t mmio_value) {
  if (is_frozen(s)) return Kind::Frozen;
  if (is_shadow_present(s)) return is_last(s, l) ? Kind::Leaf : Kind::NonLeaf;
  if (is_mmio(s, mmio_value)) return Kind::Mmio;
  return Kind::NonPresent;
}
const char* kind_name(Kind k);

}  // namespace mirrormmu::spte
