// SPDX-License-Identifier: MIT
#include "check/transitions.h"

namespace mirrormmu {

void TransitionRow::merge(const TransitionRow& o) {
  attempts += o.attempts;
  for (const auto& [e, n] : o.refused) refused[e] += n;
  for (const auto& [st, n] : o.sites) sites[st] += n;
}

}  // namespace mirrormmu
