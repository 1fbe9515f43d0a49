/* SPDX-License-Identifier: GPL-2.0-only */
/* No event of trace/events/kvm.h is used by the TDP MMU files. */
#include <linux/tracepoint.h>
