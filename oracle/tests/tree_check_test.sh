#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# A tree the oracle cannot shim is refused with one line naming what is
# wrong and exit code 2, before anything is built.
set -u
gen="$(dirname "$0")/../gen/tree_decls.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
expect() {  # expect <what> <pattern> <args...>
  local what=$1 pat=$2; shift 2
  local out rc
  out=$(python3 "$gen" "$@" "$tmp/out" 2>&1 >/dev/null); rc=$?
  if [ $rc -ne 2 ] || [ "$(printf '%s\n' "$out" | wc -l)" -ne 1 ] || ! grep -q -- "$pat" <<<"$out"; then
    echo "FAIL $what: rc=$rc: $out"; fails=$((fails + 1))
  else
    echo "ok   $what: $out"
  fi
}
expect "no such path" "is not a directory" "$tmp/nope"
mkdir -p "$tmp/empty"
expect "not a kernel tree" "missing Makefile" "$tmp/empty"
mkdir -p "$tmp/old"
printf 'VERSION = 5\nPATCHLEVEL = 10\nSUBLEVEL = 1\n' > "$tmp/old/Makefile"
expect "unsupported version" "is Linux 5.10.1; the oracle shim supports 6.12" "$tmp/old"
mkdir -p "$tmp/bare/arch/x86/kvm/mmu"
printf 'VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 0\n' > "$tmp/bare/Makefile"
expect "missing file" "missing arch/x86/kvm/mmu/tdp_mmu.c" "$tmp/bare"
[ $fails -eq 0 ]
