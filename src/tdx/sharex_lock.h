// SPDX-License-Identifier: MIT
// The TDX module's sharex locks: try-locks that never wait, a conflict is
// the caller's TDX_OPERAND_BUSY. Two shapes with the same semantics:
//
// - SharexLock, one word (the exclusive bit and the count of shared
//   holders, changed by compare-and-swap), as the module keeps them. For the
//   locks of one page or one 2M PAMT region, which two CPUs rarely share.
// - ShardedSharexLock, for the TD-wide locks every per-page call takes
//   shared (TDR, S-EPT tree, TD epoch). Two vCPUs faulting side by side
//   would pass one word between their caches several times a page, and in
//   the model that, not the work, decided the speed of two threads. Shared
//   holders count themselves in a per-thread shard; an exclusive attempt
//   announces itself, then looks at the shards.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

#include "base/percpu_counter.h"

namespace mirrormmu::tdx {

enum class LockMode : uint8_t { Shared, Exclusive };

class SharexLock {
 public:
  bool try_lock(LockMode mode) {
    uint32_t v = word_.load(std::memory_order_relaxed);
    do {
      if ((v & kExclusive) || (mode == LockMode::Exclusive && v != 0)) return false;
    } while (!word_.compare_exchange_weak(v, mode == LockMode::Exclusive ? kExclusive : v + 1,
                                          std::memory_order_acquire, std::memory_order_relaxed));
    return true;
  }
  void unlock(LockMode mode) {
    if (mode == LockMode::Exclusive)
      word_.store(0, std::memory_order_release);
    else
      word_.fetch_sub(1, std::memory_order_release);
  }

 private:
  static constexpr uint32_t kExclusive = 1u << 31;
  std::atomic<uint32_t> word_{0};
};

// An exclusive attempt moves the state Free -> Trying, then sums the shards:
// zero, it holds the lock (Held); otherwise it fails and goes back to Free.
// A shared attempt adds itself to its shard, then reads the state (both
// sequentially consistent, so at least one of the two sees the other): Free,
// it holds; Held, it fails; Trying, it takes itself out again and waits the
// few loads until the attempt settles, then tries again. So a shared attempt
// fails only against a holder, as with the one word: an exclusive attempt
// that is about to fail does not make a shared one fail too.
//
// Shards are summed, not each required to be zero: VP.ENTER takes the TDR
// lock shared and td_exit may drop it on another thread.
class ShardedSharexLock {
 public:
  // The classic bugs of such a lock, planted only by the tests that show
  // they are caught: a shared attempt that does not look at the state, and
  // an exclusive one that does not look at the shards (the stress of
  // tests/tdx/locks_test.cpp; for the alone attempt, the module's calls in
  // tests/tdx/shared_holds_test.cpp).
  enum class Flaw : uint8_t { None, SharedIgnoresExclusive, ExclusiveIgnoresShared };
  void plant_flaw(Flaw f) { flaw_ = f; }

  bool try_lock(LockMode mode) {
    if (mode == LockMode::Exclusive) return try_lock_exclusive();
    std::atomic<int64_t>& n = shards_[detail::current_cpu() & mask_].n;
    for (;;) {
      n.fetch_add(1, std::memory_order_seq_cst);
      const State s = state_.load(std::memory_order_seq_cst);
      if (s == State::Free || flaw_ == Flaw::SharedIgnoresExclusive) [[likely]]
        return true;
      n.fetch_sub(1, std::memory_order_release);
      if (s == State::Held) return false;
      for (int spins = 0; state_.load(std::memory_order_acquire) == State::Trying; spins++)
        if (spins > 64) std::this_thread::yield();  // the other thread lost its CPU mid-attempt
    }
  }
  void unlock(LockMode mode) {
    if (mode == LockMode::Exclusive)
      state_.store(State::Free, std::memory_order_release);
    else
      shards_[detail::current_cpu() & mask_].n.fetch_sub(1, std::memory_order_release);
  }

  // For a caller that keeps a shared hold to itself while something else
  // keeps exclusive attempts away (the TDX model's own lock: see "Shared
  // holds" in module_impl.h). held_exclusive(): a shared attempt would fail
  // now. publish_shared(): such a hold becomes a counted one, which
  // unlock(Shared) then drops.
  bool held_exclusive() const { return state_.load(std::memory_order_relaxed) != State::Free; }
  // An exclusive attempt by a caller that keeps every other attempt away
  // and every shared holder from counting itself in meanwhile (the model's
  // lock held exclusively; a holder may still count itself out): no other
  // thread writes the state, so it needs no compare-and-swap, and no
  // shard can become non-zero while it is summed.
  bool try_lock_exclusive_alone() {
    if (state_.load(std::memory_order_relaxed) != State::Free) return false;
    int64_t holders = 0;
    if (flaw_ != Flaw::ExclusiveIgnoresShared)
      for (unsigned i = 0; i <= mask_; i++) holders += shards_[i].n.load(std::memory_order_acquire);
    if (holders != 0) return false;
    state_.store(State::Held, std::memory_order_relaxed);
    return true;
  }
  void publish_shared() { shards_[detail::current_cpu() & mask_].n.fetch_add(1, std::memory_order_seq_cst); }

 private:
  enum class State : uint8_t { Free, Trying, Held };

  bool try_lock_exclusive() {
    State expected = State::Free;
    if (!state_.compare_exchange_strong(expected, State::Trying, std::memory_order_seq_cst)) return false;
    int64_t holders = 0;
    if (flaw_ != Flaw::ExclusiveIgnoresShared)
      for (unsigned i = 0; i <= mask_; i++) holders += shards_[i].n.load(std::memory_order_seq_cst);
    state_.store(holders == 0 ? State::Held : State::Free, std::memory_order_release);
    return holders == 0;
  }

  struct alignas(64) Shard {
    std::atomic<int64_t> n{0};
  };
  alignas(64) std::atomic<State> state_{State::Free};
  Flaw flaw_ = Flaw::None;
  const unsigned mask_ = detail::cpu_shards() - 1;
  Shard shards_[detail::kMaxCpuShards];
};

}  // namespace mirrormmu::tdx
