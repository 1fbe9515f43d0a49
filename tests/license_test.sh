#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Every source file names its license; oracle/ is GPL-2.0-only and the rest
# MIT; Google Benchmark (Apache-2.0, not GPL-2.0 compatible) never meets the
# oracle in one binary.
set -u
root=${1:?usage: license_test.sh REPO}
cd "$root" || exit 2
fails=0
while IFS= read -r f; do
  want=MIT
  case $f in oracle/*) want=GPL-2.0-only ;; esac
  if ! head -3 "$f" | grep -q "SPDX-License-Identifier: $want\b"; then
    echo "FAIL $f: no 'SPDX-License-Identifier: $want' in its first lines"; fails=$((fails + 1))
  fi
done < <(find src tests bench oracle cmake -type f \( -name '*.cpp' -o -name '*.h' -o -name '*.c' -o -name '*.sh' \
           -o -name '*.py' -o -name '*.cmake' -o -name CMakeLists.txt \) | sort)
if grep -q "benchmark" oracle/CMakeLists.txt; then
  echo "FAIL oracle/CMakeLists.txt mentions Google Benchmark"; fails=$((fails + 1))
fi
if grep -q "mirrormmu_kernel_mmu" bench/CMakeLists.txt; then
  echo "FAIL bench/ links the GPL-2.0-only oracle together with Apache-2.0 Google Benchmark"; fails=$((fails + 1))
fi
[ $fails -eq 0 ] && echo "licenses: ok"
[ $fails -eq 0 ]
