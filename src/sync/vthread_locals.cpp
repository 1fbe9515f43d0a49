// SPDX-License-Identifier: MIT
#include "sync/vthread_locals.h"

#include <cstring>

namespace mirrormmu::sync {

namespace {
struct Slot {
  ThreadLocalAddress address;
  const void* initial;
  size_t size;
  size_t offset;
};
struct Registry {
  std::vector<Slot> slots;
  size_t bytes = 0;
};
// Filled by static initializers, in whatever order they run.
Registry& registry() {
  static Registry r;
  return r;
}
}  // namespace

int register_vthread_local(ThreadLocalAddress address, const void* initial, size_t size) {
  Registry& r = registry();
  r.slots.push_back({address, initial, size, r.bytes});
  r.bytes += size;
  return static_cast<int>(r.slots.size() - 1);
}

VthreadLocals::VthreadLocals() : bytes_(registry().bytes) {
  for (const Slot& s : registry().slots) std::memcpy(bytes_.data() + s.offset, s.initial, s.size);
}

void VthreadLocals::save() {
  for (const Slot& s : registry().slots) std::memcpy(bytes_.data() + s.offset, s.address(), s.size);
}

void VthreadLocals::load() const {
  for (const Slot& s : registry().slots) std::memcpy(s.address(), bytes_.data() + s.offset, s.size);
}

}  // namespace mirrormmu::sync
