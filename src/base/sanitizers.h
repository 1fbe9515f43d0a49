// SPDX-License-Identifier: MIT
// Which sanitizer this translation unit is built with, for the code that
// has to tell ASan or TSan what it does behind their back (switching
// stacks, keeping freed memory for reuse). GCC and Clang say it differently.
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define MIRRORMMU_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define MIRRORMMU_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(MIRRORMMU_ASAN)
#define MIRRORMMU_ASAN 1
#endif
#if __has_feature(thread_sanitizer) && !defined(MIRRORMMU_TSAN)
#define MIRRORMMU_TSAN 1
#endif
#endif
