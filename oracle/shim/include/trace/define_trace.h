/* SPDX-License-Identifier: GPL-2.0-only */
/* The tree's trace headers need no second pass here. */
