// SPDX-License-Identifier: MIT
// Big arrays that start zero and are indexed directly (a pool's slot per
// frame, a backing's frame per page), as the kernel's struct page array is:
// reserved for every index, backed by the host only where written.
//
// An explored execution builds a VM and drops it, each time with arrays of
// the same sizes. A fresh mapping cost a page fault for every page written
// (microseconds each on a VM), and calloc a memset of the whole array: the
// pool's slots alone made an execution half as long again. So an array goes
// back here zero again where its user wrote it, and the next user of that
// size takes it as it is.
#pragma once

#include <cstddef>

namespace mirrormmu {

// `bytes` of zeros (null for 0). Throws std::bad_alloc.
void* take_zeroed_array(size_t bytes);
// `p` from take_zeroed_array(bytes), all zero again: kept for the next
// taker of that size (a few, up to 16 MiB each), else unmapped.
//
// Under ASan and TSan arrays are calloc's and go back to free: LeakSanitizer
// looks for pointers in the heap, not in mappings of our own, and reported
// every page table reachable only through a pool's slots as leaked.
void give_back_zeroed_array(void* p, size_t bytes);

}  // namespace mirrormmu
