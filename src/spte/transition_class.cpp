// SPDX-License-Identifier: MIT
#include "spte/transition_class.h"

namespace mirrormmu {

std::string TransitionClass::name() const {
  return std::string(spte::kind_name(old_kind)) + "->" + spte::kind_name(new_kind) +
         (shared ? " shared" : " exclusive") + (mirror ? " mirror" : " direct");
}

TransitionClass TransitionCounts::at(size_t i) {
  TransitionClass c{};
  c.mirror = i % 2;
  i /= 2;
  c.shared = i % 2;
  i /= 2;
  c.new_kind = static_cast<spte::Kind>(i % kSpteKinds);
  c.old_kind = static_cast<spte::Kind>(i / kSpteKinds);
  return c;
}

uint64_t TransitionCounts::total() const {
  uint64_t n = 0;
  for (size_t i = 0; i < kClasses; i++) n += count(i);
  return n;
}

size_t TransitionCounts::distinct() const {
  size_t n = 0;
  for (size_t i = 0; i < kClasses; i++) n += count(i) != 0;
  return n;
}

}  // namespace mirrormmu
