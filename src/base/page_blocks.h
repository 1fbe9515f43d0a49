// SPDX-License-Identifier: MIT
// 4 KiB, page-aligned blocks of memory for page tables. An explored
// execution builds and tears down a TD: about two hundred page tables
// allocated, quarantined when freed (DetEngine::quarantine) and released
// when the execution's engine goes. Released blocks are kept for the next
// execution on this thread instead of going back to malloc, which cost more
// than a tenth of an execution in aligned_alloc and free.
//
// Only blocks nothing can reach are recycled: those of an execution that is
// over. A page table freed by a native run goes back at once (page_block_free),
// so that ASan sees any use after free; recycled blocks are poisoned for ASan
// while they wait. New blocks come from a BlockSlab (base/block_slab.h), which
// under the sanitizers is malloc.
#pragma once

namespace mirrormmu {

// A block from this thread's recycled blocks, else a new one; null if out of
// memory. Its contents are undefined. Release it with page_block_free() or
// page_block_recycle().
void* page_block_alloc();
// Gone for good (null is ignored).
void page_block_free(void* block);
// No longer reachable by anything: kept for page_block_alloc() (up to a
// bound; beyond it, freed).
void page_block_recycle(void* block);

}  // namespace mirrormmu
