// SPDX-License-Identifier: MIT
// Strong types for the three numbers every MMU function juggles: guest frame
// numbers, host frame numbers and page-table levels. Mixing a gfn with a pfn
// is the classic MMU bug; the types make it a compile error.
#pragma once

#include <compare>
#include <cstdint>
#include <limits>
#include <string>

namespace mirrormmu {

inline constexpr int kPageShift = 12;
inline constexpr uint64_t kPageSize = 1ull << kPageShift;
inline constexpr int kSptePerPage = 512;            // SPTE_ENT_PER_PAGE
inline constexpr int kLevelBits = 9;

struct Gfn {
  uint64_t v = 0;
  constexpr Gfn() = default;
  constexpr explicit Gfn(uint64_t raw) : v(raw) {}
  constexpr auto operator<=>(const Gfn&) const = default;
  constexpr Gfn operator+(uint64_t n) const { return Gfn{v + n}; }
  constexpr Gfn operator-(uint64_t n) const { return Gfn{v - n}; }
  constexpr uint64_t operator-(Gfn o) const { return v - o.v; }
  constexpr Gfn& operator+=(uint64_t n) { v += n; return *this; }
  constexpr uint64_t gpa() const { return v << kPageShift; }
  static constexpr Gfn from_gpa(uint64_t gpa) { return Gfn{gpa >> kPageShift}; }
};

struct Pfn {
  uint64_t v = kInvalid;
  static constexpr uint64_t kInvalid = std::numeric_limits<uint64_t>::max();
  constexpr Pfn() = default;
  constexpr explicit Pfn(uint64_t raw) : v(raw) {}
  constexpr auto operator<=>(const Pfn&) const = default;
  constexpr Pfn operator+(uint64_t n) const { return Pfn{v + n}; }
  constexpr uint64_t operator-(Pfn o) const { return v - o.v; }
  constexpr bool valid() const { return v != kInvalid; }
  constexpr uint64_t hpa() const { return v << kPageShift; }
};

inline constexpr Pfn kInvalidPfn{};

// enum pg_level: PG_LEVEL_4K = 1 ... PT64_ROOT_MAX_LEVEL = 5. The TDX module
// counts from zero; tdx/ converts at the SEAMCALL boundary, as the kernel does.
enum class PgLevel : int8_t { k4K = 1, k2M = 2, k1G = 3, k512G = 4, k256T = 5 };

inline constexpr int kRootMaxLevel = 5;
inline constexpr int kMaxHugeLevel = 3;  // leaves never sit above 1G

constexpr int lvl(PgLevel l) { return static_cast<int>(l); }
constexpr PgLevel to_level(int l) { return static_cast<PgLevel>(l); }
constexpr PgLevel lower(PgLevel l) { return to_level(lvl(l) - 1); }
constexpr PgLevel higher(PgLevel l) { return to_level(lvl(l) + 1); }

// KVM_PAGES_PER_HPAGE(level): 1, 512, 262144, ...
constexpr uint64_t pages_per_hpage(PgLevel l) {
  return 1ull << (kLevelBits * (lvl(l) - 1));
}
constexpr Gfn gfn_round_for_level(Gfn g, PgLevel l) {
  return Gfn{g.v & ~(pages_per_hpage(l) - 1)};
}
constexpr bool gfn_aligned(Gfn g, PgLevel l) { return (g.v & (pages_per_hpage(l) - 1)) == 0; }
// Index of the entry for gfn at level (SPTE_INDEX).
constexpr int spte_index(uint64_t gfn_with_bits, PgLevel l) {
  return static_cast<int>((gfn_with_bits >> (kLevelBits * (lvl(l) - 1))) & (kSptePerPage - 1));
}
const char* level_name(PgLevel l);

// A kernel-style negative errno as its name ("-EAGAIN"), the way a KVM
// developer reads return codes; a value with no name prints as a number.
std::string errno_str(int ret);

}  // namespace mirrormmu
