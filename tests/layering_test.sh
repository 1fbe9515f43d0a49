#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The house is layered: a layer includes only layers below it. Fails listing
# every include that reaches up.
set -u
src=${1:?usage: layering_test.sh SRC_DIR}
order=(base sync mem spte mmu tdx vm check explore workload report cli)
rank() { local i; for i in "${!order[@]}"; do [ "${order[$i]}" = "$1" ] && { echo "$i"; return; }; done; echo -1; }
bad=0
for f in $(find "$src" -name '*.h' -o -name '*.cpp'); do
  layer=$(echo "${f#$src/}" | cut -d/ -f1)
  me=$(rank "$layer")
  while IFS= read -r inc; do
    dep=$(echo "$inc" | cut -d/ -f1)
    them=$(rank "$dep")
    [ "$them" -lt 0 ] && continue
    # check/ observes tdx and vm state; it sits above them. explore drives vm.
    if [ "$them" -gt "$me" ]; then
      echo "layering: ${f#$src/} ($layer) includes $inc ($dep)"
      bad=1
    fi
  done < <(grep -hoE '^#include "[^"]+"' "$f" | sed -E 's/#include "([^"]+)"/\1/')
done
[ $bad -eq 0 ] && echo "layering: ok"
exit $bad
