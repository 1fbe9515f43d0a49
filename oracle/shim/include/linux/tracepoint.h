/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The tree's tracepoints, as calls the oracle can watch. Each TRACE_EVENT
 * becomes trace_<name>(args) calling kshim_trace_<name>() when the glue
 * defines it (a weak symbol otherwise left null): the glue turns
 * kvm_tdp_mmu_spte_changed and friends into observer calls, so the checker
 * and the transition table see what the real code did.
 */
#ifndef KSHIM_TRACEPOINT_H
#define KSHIM_TRACEPOINT_H

#include "kshim/core.h"

#define TP_PROTO(...) (__VA_ARGS__)
#define TP_ARGS(...) (__VA_ARGS__)
#define KSHIM_TRACE(name, proto, args) \
  extern void kshim_trace_##name proto __attribute__((weak)); \
  static inline void trace_##name proto { if (kshim_trace_##name) kshim_trace_##name args; }
#define TRACE_EVENT(name, proto, args, ...) KSHIM_TRACE(name, proto, args)
#define DEFINE_EVENT(cls, name, proto, args) KSHIM_TRACE(name, proto, args)
#define DECLARE_EVENT_CLASS(...)
#define TRACE_DEFINE_ENUM(x)

#endif
