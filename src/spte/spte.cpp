// SPDX-License-Identifier: MIT
#include "spte/spte.h"

namespace mirrormmu::spte {

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::NonPresent: return "nonpresent";
    case Kind::Leaf: return "leaf";
    case Kind::NonLeaf: return "nonleaf";
    case Kind::Frozen: return "frozen";
    case Kind::Mmio: return "mmio";
  }
  return "?";
}

}  // namespace mirrormmu::spte
