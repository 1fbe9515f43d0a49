// SPDX-License-Identifier: MIT
// A big-reader lock for OS threads: readers on different CPUs share no cache
// line, a writer pays for that by looking at every reader shard. It is what
// mmu_lock and the memslot lock are natively (the readers are vCPUs faulting,
// the writers rare zaps and memslot updates), and the TDX module model's own
// lock, under which independent PAGE.AUGs run side by side.
//
// A reader marks itself in its shard, then checks the writer's flag; a
// writer raises the flag, then waits for the shards to drain. Both sides
// store before they load, sequentially consistent (Dekker), so at least one
// sees the other. A reader that meets a writer backs off and sleeps on the
// flag (a futex, through std::atomic::wait), as does a writer that meets
// another; the writer leaving wakes them only if someone counted itself a
// waiter. No pthread lock on any path: an uncontended exclusive hold is one
// compare-and-swap and a look at the shards.
//
// Readers come in two kinds, chosen per lock. Symmetric readers pay a
// locked add on the way in and out, and a writer only looks at the shards.
// Asymmetric readers (liburcu's "memb" scheme) mark themselves with a plain
// store in a slot of their own thread and check the flag with no fence; the
// writer makes up for the missing fence with membarrier(2), which runs a
// full barrier on every CPU running a thread of the process, and then looks
// at every thread's slots. That is right for mmu_lock and the memslot lock,
// taken for read on every fault and for write a few thousand times a run;
// not for the module's lock, taken exclusively for every BLOCK and REMOVE.
// Without membarrier (an old kernel, a seccomp filter) and under TSan, which
// cannot see a membarrier's ordering, every lock is symmetric.
//
// A lock may also be biased to the first thread that takes it (the TDX
// model's lock, which a run on one thread, and the explorer's fibers on
// one, only ever take from that thread): that thread then takes and drops
// it, either way, with a plain store and load of a flag of its own, and no
// locked instruction. The first other thread to want it revokes the bias,
// once: it raises a flag, runs membarrier(2) so that the owner's store is
// seen or the owner sees the flag (the asymmetric readers' Dekker), waits
// for the owner to leave, and from then on the lock is an ordinary one for
// every thread. Without membarrier, and under TSan, nothing is biased.
//
// Recursive per thread: a thread that holds it (either way) may take it
// shared again, and a writer may take it again exclusively. Taking it
// exclusively while holding it only shared would deadlock and is refused.
//
// Not a scheduling point: the deterministic engine models mmu_lock itself,
// and the module's lock is never held across a switch.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>

#include "base/percpu_counter.h"

namespace mirrormmu::sync {

class BrLock;

namespace detail {
// How a thread came into the outermost of its holds of a lock, which is how
// it leaves.
enum class BrWay : uint8_t { None, Writer, WriterBiased, ReaderBiased, ReaderSlot, ReaderShard };
// What a thread holds of one lock. Sixteen bytes, so a hold's index is a
// shift away from its address.
struct BrHold {
  const BrLock* lock = nullptr;
  uint32_t shared = 0;
  uint16_t exclusive = 0;
  BrWay way = BrWay::None;
  uint8_t shard = 0;  // ReaderShard's (the thread may run on another CPU by the exit)
};
inline constexpr size_t kMaxBrHolds = 8;
// A first shared hold taken each of the ways lock_shared() takes inline,
// but for its lock.
inline constexpr BrHold kReaderSlotHold{nullptr, 1, 0, BrWay::ReaderSlot, 0};
inline constexpr BrHold kReaderBiasedHold{nullptr, 1, 0, BrWay::ReaderBiased, 0};
inline constexpr BrHold kReaderShardHold{nullptr, 1, 0, BrWay::ReaderShard, 0};
// A thread's holds, in a small array: it holds a few locks at once (a VM's
// mmu_lock and memslot lock, the module's lock; two VMs in a test). Holds at
// or past `top` are free. A thread takes its locks nested (the memslot lock,
// then mmu_lock, then the module's), so the live ones sit at the bottom and
// looking for a lock it does not hold, which every fault does twice, reads
// one or two entries.
struct BrThread {
  std::array<BrHold, kMaxBrHolds> holds{};
  size_t top = 0;
  // The thread's asymmetric reader slots, one per hold index; null until
  // its first asymmetric read.
  std::atomic<const BrLock*>* reading = nullptr;
};
// Trivially built and destroyed, so reaching it is one %fs-relative address.
extern constinit thread_local BrThread tl_br;
// A lock's bias once revoked, for good: an address no thread's token has.
inline constexpr char kBiasRevokedTag = 0;
inline constexpr const void* kBiasRevoked = &kBiasRevokedTag;
}  // namespace detail

class BrLock {
 public:
  enum class Readers : uint8_t { Symmetric, Asymmetric };
  enum class Bias : uint8_t { None, FirstThread };
  explicit BrLock(Readers r = Readers::Symmetric, Bias b = Bias::None);

  void lock();
  void unlock();
  // Inline: every fault takes two asymmetric locks for read, and a mirror
  // fault the module's lock (its owner's bias, or symmetric once that is
  // gone). The rest (a thread's first asymmetric read, claiming or revoking
  // a bias, a writer inside, recursion past the first hold) goes out of
  // line.
  void lock_shared() {
    detail::BrThread& t = detail::tl_br;
    for (size_t i = 0; i < t.top; i++)
      if (t.holds[i].lock == this) [[unlikely]] {
        t.holds[i].shared++;
        return;
      }
    if (asym_only_ && t.reading != nullptr && t.top < detail::kMaxBrHolds) [[likely]] {
      std::atomic<const BrLock*>& mine = t.reading[t.top];
      mine.store(this, std::memory_order_relaxed);
      // No fence between the store and the load: the writer's membarrier is
      // the other half of it. Only the compiler must keep the order.
      std::atomic_signal_fence(std::memory_order_seq_cst);
      if (!writer_.load(std::memory_order_acquire)) [[likely]] {
        push_hold(t, detail::kReaderSlotHold);
        return;
      }
      mine.store(nullptr, std::memory_order_release);
    } else if (biasable_ && bias_.load(std::memory_order_relaxed) == &t && t.top < detail::kMaxBrHolds) {
      // The owner of a biased lock (the TDX module's, on a run's one
      // thread), which every mirror fault takes.
      if (owner_enter()) [[likely]] {
        push_hold(t, detail::kReaderBiasedHold);
        return;
      }
    } else if (!asym_ && (!biasable_ || bias_.load(std::memory_order_relaxed) == detail::kBiasRevoked) &&
               t.top < detail::kMaxBrHolds) {
      // A symmetric lock whose bias is gone for good (or never was): the
      // owner is out and takes this way too. A biased lock's owner and
      // first takers go out of line.
      const unsigned shard = read_enter();
      push_hold(t, detail::kReaderShardHold);
      t.holds[t.top - 1].shard = static_cast<uint8_t>(shard);
      return;
    }
    lock_shared_first();
  }
  void unlock_shared() {
    detail::BrThread& t = detail::tl_br;
    const size_t i = held_index();
    detail::BrHold& h = t.holds[i];
    if (--h.shared != 0) return;
    switch (h.way) {
      case detail::BrWay::ReaderSlot: t.reading[i].store(nullptr, std::memory_order_release); break;
      case detail::BrWay::ReaderShard: read_exit(h.shard); break;
      case detail::BrWay::ReaderBiased: bias_exit(); break;
      default: unlock_shared_last(i); return;
    }
    drop_top_hold(t, h, i);
  }

  // How this thread holds it; exclusively if both ways (a writer that took
  // it shared again). What mmu_lock's lockdep assertions ask natively.
  enum class Held : uint8_t { None, Shared, Exclusive };
  Held held_by_me() const {
    const detail::BrHold* h = my_hold();
    if (h == nullptr) return Held::None;
    return h->exclusive != 0 ? Held::Exclusive : Held::Shared;
  }
  bool held_exclusive_by_me() const { return held_by_me() == Held::Exclusive; }
  // No other thread can be inside now: this one holds it exclusively, or
  // by the bias.
  bool held_alone_by_me() const {
    const detail::BrHold* h = my_hold();
    return h != nullptr && (h->exclusive != 0 || h->way == detail::BrWay::ReaderBiased);
  }
  // Someone waits (a writer for the readers, or a reader for a writer).
  bool contended() const { return waiters_.load(std::memory_order_relaxed) != 0; }
  // Asymmetric was asked for and membarrier(2) is there to make it so.
  bool asymmetric() const { return asym_; }
  // Biased to a thread now (not yet taken, or revoked: false).
  bool biased() const;

  // The two classic bugs of a big-reader lock, planted only by the test that
  // shows it catches them (tests/sync/mmu_lock_test.cpp): a reader that
  // enters without looking at the writer's flag, and a writer that raises
  // the flag but does not wait for the readers inside. Both are tested off
  // the readers' fast path, so the hook costs nothing there. The third is
  // the asymmetric scheme's own: a writer that looks at the readers' slots
  // without the membarrier, so a reader's mark still in its CPU's store
  // buffer is missed while that reader's load of the flag has already
  // passed it (tests/litmus/br_lock_litmus_test.cpp).
  // The bias has its own: a revoker that looks at the owner's flag without
  // the membarrier (RevokerSkipsMembarrier, in the same litmus test), and an
  // owner that comes in by the bias while a revoker is on its way
  // (OwnerIgnoresRevoker, tests/sync/br_lock_bias_test.cpp).
  enum class Flaw : uint8_t { None, ReaderIgnoresWriter, WriterIgnoresReaders, WriterSkipsMembarrier,
                              RevokerSkipsMembarrier, OwnerIgnoresRevoker };
  void plant_flaw(Flaw f) { flaw_ = f; }
  // Test hook: a revoker waits this long between seeing the owner out and
  // revoking, which widens the window OwnerIgnoresRevoker falls into.
  void widen_revocation_for_test(uint32_t us) { revoke_pause_us_ = us; }

 private:
  // A shared hold this thread did not have, the ways lock_shared() does not
  // take inline.
  void lock_shared_first();
  // The last shared count of hold `i` dropped, for a way unlock_shared()
  // does not release inline (a writer's, taken shared again inside).
  void unlock_shared_last(size_t i);
  // This thread's hold of this lock, or null. From the top: the lock asked
  // about is most often the one taken last (mmu_lock, inside the memslot
  // lock, asserted by everything that runs under it).
  detail::BrHold* my_hold() const {
    detail::BrThread& t = detail::tl_br;
    for (size_t i = t.top; i-- > 0;)
      if (t.holds[i].lock == this) return &t.holds[i];
    return nullptr;
  }
  // The index of this thread's hold of this lock; a thread that has none
  // is told so and aborts (unlocking what it does not hold).
  size_t held_index() const {
    const detail::BrThread& t = detail::tl_br;
    for (size_t i = t.top; i-- > 0;)
      if (t.holds[i].lock == this) [[likely]]
        return i;
    not_held();
  }
  [[noreturn]] static void not_held();
  // Hold `i` is released. Released in the order taken, the top one goes;
  // below it the next lock out is usually still held.
  static void drop_top_hold(detail::BrThread& t, detail::BrHold& h, size_t i) {
    h.lock = nullptr;
    h.way = detail::BrWay::None;
    if (i + 1 == t.top) {
      size_t top = i;
      while (top != 0 && t.holds[top - 1].lock == nullptr) top--;
      t.top = top;
    }
  }
  // A new hold on top of the thread's table: a whole one copied and its
  // lock set (field by field it was four stores and a constant loaded
  // from memory).
  void push_hold(detail::BrThread& t, const detail::BrHold& like) const {
    detail::BrHold& h = t.holds[t.top++];
    std::memcpy(&h, &like, sizeof h);
    h.lock = this;
  }

  // Returns the shard the reader counted itself in, for read_exit(). The
  // first try is inline; meeting a writer, out of line.
  unsigned read_enter() {
    const unsigned shard = mirrormmu::detail::current_cpu() & mask_;
    readers_[shard].active.fetch_add(1, std::memory_order_seq_cst);
    if (!writer_.load(std::memory_order_seq_cst)) [[likely]]
      return shard;
    return read_enter_contended(shard);
  }
  // read_enter() met a writer, counted in `shard`.
  unsigned read_enter_contended(unsigned shard);
  void read_exit(unsigned shard) { readers_[shard].active.fetch_sub(1, std::memory_order_release); }
  // `slot`: the thread's hold index, which is also its reader slot.
  void read_enter_asym(size_t slot);
  void wait_for_asym_readers();
  void write_enter();
  void write_exit();

  // Sleeps until the writer's flag drops; counted as a waiter meanwhile.
  void wait_for_writer();

  // The owner's way in: false if this thread is not (or can no longer be)
  // the one the lock is biased to, and must take the ordinary way.
  bool bias_enter();
  void bias_exit() { owner_in_.store(false, std::memory_order_release); }
  // The owner's way in, once the bias names it: it marks itself in, and
  // steps back out if a revoker is on its way (to come in the ordinary way,
  // beside the revoker, once that has seen it out).
  bool owner_enter() {
    owner_in_.store(true, std::memory_order_relaxed);
    // No fence between the store and the load: the revoker's membarrier is
    // the other half. Only the compiler must keep the order.
    std::atomic_signal_fence(std::memory_order_seq_cst);
    // The flaw is looked at only when a revoker is there: free otherwise.
    if (!revoking_.load(std::memory_order_relaxed) || flaw_ == Flaw::OwnerIgnoresRevoker) [[likely]]
      return true;
    owner_in_.store(false, std::memory_order_release);
    return false;
  }
  // A thread that is not the owner makes the lock an ordinary one.
  void revoke_bias();

  std::atomic<bool> writer_{false};
  std::atomic<int> waiters_{0};
  Flaw flaw_ = Flaw::None;
  const bool asym_;
  const bool biasable_;
  const bool asym_only_;  // asymmetric and never biased: the inline read side
  // The owner's token (its thread's hold table), or kBiasRevoked; null until
  // someone takes the lock.
  std::atomic<const void*> bias_{nullptr};
  std::atomic<bool> owner_in_{false};  // written by the owner only
  std::atomic<bool> revoking_{false};  // raised once, never lowered
  uint32_t revoke_pause_us_ = 0;
  std::mutex revoke_mu_;               // one revoker at a time
  struct alignas(64) Shard {
    std::atomic<int64_t> active{0};
  };
  // Shards in use: detail::cpu_shards(), less one (a mask).
  const unsigned mask_;
  Shard readers_[mirrormmu::detail::kMaxCpuShards];
};

}  // namespace mirrormmu::sync
