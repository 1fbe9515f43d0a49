// SPDX-License-Identifier: MIT
#include "sync/fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "base/sanitizers.h"

#ifdef MIRRORMMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef MIRRORMMU_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace mirrormmu::sync {

namespace {

// ASan keeps a fake stack per context for use-after-return detection and
// must know which stack is live, or it reports the scheduler's frames as
// overflows of the fiber's; TSan keeps a shadow call stack and a clock per
// fiber. `save` null: the stack being left is gone for good.
void start_switch(void** save, const void* bottom, size_t size) {
#ifdef MIRRORMMU_ASAN
  __sanitizer_start_switch_fiber(save, bottom, size);
#else
  (void)save, (void)bottom, (void)size;
#endif
}
void finish_switch(void* save, const void** bottom_old, size_t* size_old) {
#ifdef MIRRORMMU_ASAN
  __sanitizer_finish_switch_fiber(save, bottom_old, size_old);
#else
  (void)save, (void)bottom_old, (void)size_old;
#endif
}
void tsan_switch(void* to) {
#ifdef MIRRORMMU_TSAN
  __tsan_switch_to_fiber(to, 0);
#else
  (void)to;
#endif
}

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::abort();
}

// Stacks of fibers that ended, ready for the next fiber on this OS thread.
struct StackCache {
  static constexpr size_t kKept = 64;
  std::vector<boost::context::stack_context> free;
  uint64_t mapped = 0;  // stacks this OS thread has mapped
  ~StackCache() {
    for (auto& s : free) release(s);
  }
  static size_t guard() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
  static void release(boost::context::stack_context& s) {
    char* top = static_cast<char*>(s.sp);
    munmap(top - s.size - guard(), s.size + guard());
  }
  static StackCache& mine() {
    thread_local StackCache c;
    return c;
  }
};

// Boost.Context's StackAllocator: hands out a cached or freshly mapped stack
// and tells the fiber where it is (the sanitizers need its bounds).
class CachedStack {
 public:
  CachedStack(const void** bottom, size_t* size) : bottom_(bottom), size_(size) {}
  boost::context::stack_context allocate();
  void deallocate(boost::context::stack_context& s) noexcept;

 private:
  const void** bottom_;
  size_t* size_;
};

}  // namespace

boost::context::stack_context CachedStack::allocate() {
  auto& cache = StackCache::mine().free;
  boost::context::stack_context s;
  if (!cache.empty()) {
    s = cache.back();
    cache.pop_back();
  } else {
    const size_t guard = StackCache::guard();
    void* base = mmap(nullptr, Fiber::kStackSize + guard, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                      -1, 0);
    if (base == MAP_FAILED) die("mirrormmu: mmap of a virtual thread's stack");
    StackCache::mine().mapped++;
    // An overflow faults on the guard page instead of writing over the
    // stack mapped below.
    if (mprotect(base, guard, PROT_NONE) != 0) die("mirrormmu: mprotect of a stack guard page");
    s.size = Fiber::kStackSize;
    s.sp = static_cast<char*>(base) + guard + Fiber::kStackSize;
  }
  const char* bottom = static_cast<char*>(s.sp) - s.size;
#ifdef MIRRORMMU_ASAN
  // Frames of the fiber that last used this stack may have left redzones.
  __asan_unpoison_memory_region(bottom, s.size);
#endif
  *bottom_ = bottom;
  *size_ = s.size;
  return s;
}

void CachedStack::deallocate(boost::context::stack_context& s) noexcept {
  auto& cache = StackCache::mine().free;
  if (cache.size() < StackCache::kKept) {
    cache.push_back(s);
  } else {
    StackCache::release(s);
  }
}

uint64_t Fiber::stacks_mapped() { return StackCache::mine().mapped; }

Fiber::Fiber(std::function<void()> fn) : fn_(std::move(fn)) {
  self_ = boost::context::fiber(std::allocator_arg, CachedStack(&stack_bottom_, &stack_size_),
                                [this](boost::context::fiber&& s) { return entry(std::move(s)); });
#ifdef MIRRORMMU_TSAN
  tsan_fiber_ = __tsan_create_fiber(0);
#endif
}

namespace {
std::mutex g_kept_lock;
std::vector<boost::context::fiber>& kept() {
  static auto* k = new std::vector<boost::context::fiber>();
  return *k;
}
}  // namespace

Fiber::~Fiber() {
  if (started_ && !done_) {
    // Destroying it would unwind its frames (forced_unwind), running MMU
    // code's destructors with the execution it belonged to gone.
    std::lock_guard g(g_kept_lock);
    kept().push_back(std::move(self_));
    return;
  }
#ifdef MIRRORMMU_TSAN
  __tsan_destroy_fiber(tsan_fiber_);
#endif
}

void Fiber::resume() {
  started_ = true;
  void* fake = nullptr;
#ifdef MIRRORMMU_TSAN
  tsan_sched_ = __tsan_get_current_fiber();
#endif
  start_switch(&fake, stack_bottom_, stack_size_);
  tsan_switch(tsan_fiber_);
  self_ = std::move(self_).resume();
  finish_switch(fake, nullptr, nullptr);
}

void Fiber::suspend() {
  void* fake = nullptr;
  start_switch(&fake, sched_bottom_, sched_size_);
  tsan_switch(tsan_sched_);
  scheduler_ = std::move(scheduler_).resume();
  finish_switch(fake, &sched_bottom_, &sched_size_);
}

boost::context::fiber Fiber::entry(boost::context::fiber&& scheduler) {
  finish_switch(nullptr, &sched_bottom_, &sched_size_);
  scheduler_ = std::move(scheduler);
  fn_();
  done_ = true;
  // This stack is about to be handed back to the cache.
  start_switch(nullptr, sched_bottom_, sched_size_);
  tsan_switch(tsan_sched_);
  return std::move(scheduler_);
}

}  // namespace mirrormmu::sync
