#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The command line as a user meets it: exit codes, one-line errors, the seed
# first, JSON output, and that a seed replays the same run.
set -u
bin=${1:?usage: cli_test.sh MIRRORMMU_BINARY}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# `sites` reads what the last `table` computed from the cache directory.
export MIRRORMMU_CACHE_DIR="$tmp/cache"
fail=0
pass=0
check() {  # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $name"; fail=$((fail + 1)); fi
}

# A clean run: exit 0, seed on the first line, a summary with the result.
"$bin" run --workload td-tiny --seed 7 --json "$tmp/out.json" >"$tmp/out" 2>"$tmp/err"
check "clean run exits 0" test $? -eq 0
check "seed is printed first" test "$(head -n1 "$tmp/out")" = "seed 7"
check "summary says OK" grep -q '^result: OK' "$tmp/out"
check "summary has SEAMCALL table" grep -q 'TDH.MEM.PAGE.AUG' "$tmp/out"
check "summary has transitions" grep -q 'nonpresent->leaf shared mirror' "$tmp/out"
check "json written" grep -q '"ok": true' "$tmp/out.json"
check "json has replay" grep -q '"replay": "mirrormmu run --workload td-tiny --seed 7' "$tmp/out.json"
check "nothing on stderr" test ! -s "$tmp/err"

# The same seed gives the same run (timings aside).
"$bin" run --workload td-tiny --seed 7 >"$tmp/out2" 2>&1
check "replay is identical" diff <(grep -v '^operations' "$tmp/out") <(grep -v '^operations' "$tmp/out2")

# The native engine runs vCPU threads and checks while they run.
"$bin" run --workload td-life --gib 0.0625 --vcpus 3 >"$tmp/native" 2>&1
check "native run exits 0" test $? -eq 0
check "native run says so" grep -q '^engine: native, 3 vCPU threads' "$tmp/native"

# explore, then replay what it found: the same trace twice.
"$bin" explore --scenario fault-fault-2m --budget 30 >"$tmp/ex" 2>&1
check "explore exits 0" test $? -eq 0
check "explore reports executions" grep -q '^executions: 30 ' "$tmp/ex"
check "explore reports classes" grep -q 'distinct SPTE transition classes seen' "$tmp/ex"
check "explore says no failure was budgeted" grep -q '^injected failures that fired: none' "$tmp/ex"
"$bin" explore --scenario fault-fault-2m --budget 5 --perfetto "$tmp/ok.perfetto" --json "$tmp/ex.json" >/dev/null 2>&1
check "explore --perfetto writes a clean run too" grep -q '"time_axis":"scheduling steps"' "$tmp/ok.perfetto"
check "explore --json" grep -q '"executions": 5' "$tmp/ex.json"
"$bin" replay 'fault-vs-convert/baseline/s2/f1,0,0,0/3.1' --perfetto "$tmp/p.json" >"$tmp/r1" 2>&1
check "replay runs" grep -q '^result: ' "$tmp/r1"
check "replay shows SEAMCALLs" grep -q 'seamcall TDH' "$tmp/r1"
check "replay shows lock ops" grep -q 'mmu_lock write_lock' "$tmp/r1"
check "perfetto written" grep -q '"traceEvents"' "$tmp/p.json"
"$bin" replay 'fault-vs-convert/baseline/s2/f1,0,0,0/3.1' >"$tmp/r2" 2>&1
check "replay is byte-identical" cmp -s "$tmp/r1" "$tmp/r2"

# Any status a leaf can return, injected by the explorer: a failed split
# under hugepage-v5, found, shrunk to one choice with one budget, replayed.
"$bin" explore --scenario accept-4k-vs-2m --design hugepage-v5 --fail-error 1 --preemptions 0 --budget 200 \
  >"$tmp/ferr" 2>&1
check "explore --fail-error fails the exploration" test $? -eq 1
check "explore --fail-error counts its kind" grep -q 'seamcall-error [0-9]* (in [0-9]* executions, budget 1)' "$tmp/ferr"
sched=$(grep -o 'replay: mirrormmu replay .*' "$tmp/ferr" | head -n1 | sed 's/^replay: mirrormmu replay //')
check "the shrunk string needs only the error budget" grep -q '/f0,0,0,0,1/e[0-9]*\.[0-9]*$' <<<"$sched"
"$bin" replay "$sched" >"$tmp/ferr-r" 2>&1
check "the replay marks the injected status" grep -q '(injected)' "$tmp/ferr-r"
check "the replay fails the same way" grep -q 'bug_site' "$tmp/ferr-r"

# A whole workload under the explorer, its failure replayable by name.
"$bin" explore --workload td-life --gib 0.01 --budget 2 >"$tmp/wl" 2>&1
check "explore --workload runs clean" test $? -eq 0
check "explore --workload explores teardown too" grep -q 'leaf->nonpresent exclusive mirror' "$tmp/wl"
"$bin" explore --workload td-life --gib 0.01 --what-if no-wbinvd --budget 2 >"$tmp/wlf" 2>&1
check "explore --workload finds the planted bug" test $? -eq 1
wsched=$(grep -o 'replay: mirrormmu replay .*' "$tmp/wlf" | head -n1 | sed 's/^replay: mirrormmu replay //')
check "its schedule names the workload" grep -q '^workload:td-life:gib=0.01:vcpus=2/upstream+no-wbinvd/' <<<"$wsched"
"$bin" replay "$wsched" >"$tmp/wlr" 2>&1
check "the workload schedule replays the failure" grep -q 'cache_not_written_back' "$tmp/wlr"
for bad in "--workload nope" "--workload td-life --scenario fault-fault-2m" "--workload td-life --gib 0"; do
  # shellcheck disable=SC2086
  "$bin" explore $bad >"$tmp/wbad" 2>&1
  check "explore $bad exits 2" test $? -eq 2
done

# Bad usage: exit 2 and exactly one line on stderr.
bad() {
  local name=$1; shift
  "$bin" "$@" >"$tmp/bo" 2>"$tmp/be"
  local rc=$?
  check "$name: exit 2 (got $rc)" test $rc -eq 2
  check "$name: one line on stderr" test "$(wc -l <"$tmp/be")" -eq 1
  check "$name: says error" grep -q '^mirrormmu: error:' "$tmp/be"
  [ -n "${BAD_AFTER_RUN:-}" ] || check "$name: nothing on stdout (refused before anything runs)" test ! -s "$tmp/bo"
}
bad "no subcommand"
bad "unknown subcommand" frobnicate
bad "unknown flag" run --frobnicate
bad "zero gib" run --gib 0
bad "negative gib" run --gib -1
bad "huge gib" run --gib 100000
bad "non-numeric gib" run --gib lots
bad "nan gib" run --gib nan
bad "zero vcpus" run --vcpus 0
bad "too many vcpus" run --vcpus 100000
bad "unknown design" run --design nope
bad "unknown workload" run --workload nope
bad "bad ept levels" run --ept-levels 3
bad "non-numeric seed" run --seed x
bad "unwritable json" run --workload td-tiny --json /nonexistent-dir/x.json
bad "unknown scenario" explore --scenario nope
bad "bad strategy" explore --strategy zigzag
bad "zero budget" explore --budget 0
bad "negative time" explore --time -1
printf '{"slots": [], "threads": []}' >"$tmp/bad.json"
bad "bad scenario file" explore --scenario "$tmp/bad.json"
printf 'not json' >"$tmp/bad2.json"
bad "unparsable scenario file" explore --scenario "$tmp/bad2.json"
bad "garbage schedule" replay nonsense
bad "bad schedule choices" replay 'fault-fault-2m/baseline/s2/f0,0,0,0/x'
bad "bad schedule scale" replay 'fault-fault-2m/baseline/s0/f0,0,0,0/0'
bad "unknown schedule design" replay 'fault-fault-2m/nope/s2/f0,0,0,0/0'
bad "tiny bench" bench --pages 1
bad "bench search seconds not a number" bench --dfs-seconds nan
bad "dpor with a shard" explore --dpor --shard 0/2
bad "dpor with two jobs" explore --dpor --jobs 2
bad "dpor with pct" explore --dpor --strategy pct
bad "dpor with no reduction" explore --dpor --no-reduction
bad "bench search seconds negative" bench --dfs-seconds -1
bad "baseline refuses huge pages" run --design baseline --huge-pages --gib 0.01
bad "huge-page scenario under baseline" explore --scenario accept-4k-vs-2m --design baseline
bad "bad external-spt policy" run --external-spt kvm
bad "bad split-alloc" run --split-alloc zeroed
bad "compare needs designs" compare
bad "compare needs two designs" compare --designs upstream
bad "compare unknown design" compare --designs upstream,nope
bad "unknown what-if" run --what-if nope
bad "promotion without huge pages" run --what-if mirror-promotion
bad "unknown what-if in a design spec" explore --design upstream+nope
bad "unknown tdx module" run --tdx-module 2.0
bad "inject: unknown leaf" run --inject TDH.MEM.NOPE=TDX_OPERAND_BUSY
bad "inject: status the leaf cannot return" run --inject TDH.MEM.PAGE.AUG=TDX_FLUSHVP_NOT_DONE
bad "inject: no status" run --inject TDH.MEM.PAGE.AUG
bad "inject: call number zero" run --inject 'TDH.MEM.PAGE.AUG#0=TDX_OPERAND_BUSY'
bad "inject: call number not a number" run --inject 'TDH.MEM.PAGE.AUG#x=TDX_OPERAND_BUSY'
bad "inject: a guest leaf" run --inject TDG.MEM.PAGE.ACCEPT=TDX_OPERAND_BUSY
# Known only once the run is over: the summary comes first.
BAD_AFTER_RUN=1 bad "inject: call never reached" run --workload td-tiny --inject 'TDH.MEM.PAGE.DEMOTE#1=TDX_OPERAND_BUSY'
bad "inject-alloc: unknown site" run --inject-alloc nope
bad "inject-alloc: bad number" run --inject-alloc 'split-table#-1'
BAD_AFTER_RUN=1 bad "inject-alloc: never reached (no DPAMT)" run --workload td-tiny --inject-alloc pamt-pair
"$bin" run --design hugepage-v5 --huge-pages --gib 0.0625 --inline --inject-alloc 'split-table#1' >"$tmp/ia" 2>&1
check "a failed split-table allocation is survived" test $? -eq 0
check "a failed split-table allocation is reported" grep -q '^injected: allocation split-table#1 (failed with -ENOMEM)' "$tmp/ia"
"$bin" run --inject TDH.MEM.PAGE.AUG=TDX_FLUSHVP_NOT_DONE >/dev/null 2>"$tmp/ie"
check "inject lists what the leaf can return" grep -q 'TDX_EPT_ENTRY_STATE_INCORRECT' "$tmp/ie"
"$bin" run --what-if nope >/dev/null 2>"$tmp/wi"
check "unknown what-if lists the valid ones" grep -q 'no-memslot-invalid-bailout' "$tmp/wi"

# A failed split, injected identically in every column.
"$bin" compare --designs hugepage-v5,split-hook --huge-pages --gib 0.0625 --inline \
  --inject 'TDH.MEM.PAGE.DEMOTE#1=TDX_EPT_ENTRY_STATE_INCORRECT' >"$tmp/inj" 2>&1
check "injected compare fails (exit 1)" test $? -eq 1
check "injected compare shows the DEMOTE failure in both" \
  grep -Eq 'TDH.MEM.PAGE.DEMOTE: TDX_EPT_ENTRY_STATE_INCORRECT\|RCX +1 +1$' "$tmp/inj"
check "injected compare names the TDX_BUG_ON" grep -q '^  tdh_mem_page_demote ' "$tmp/inj"
"$bin" run --design hugepage-v5 --huge-pages --gib 0.0625 --inline --json "$tmp/injr.json" \
  --inject 'TDH.MEM.PAGE.DEMOTE#1=TDX_EPT_ENTRY_STATE_INCORRECT' >"$tmp/injr" 2>&1
check "injected run says what it injected" grep -q '^injected: TDH.MEM.PAGE.DEMOTE#1=.*returned in place of the call' "$tmp/injr"
check "injected run replay carries it" grep -q -- "--inject TDH.MEM.PAGE.DEMOTE#1=TDX_EPT_ENTRY_STATE_INCORRECT" "$tmp/injr.json"

# Private huge pages under a design that can split them, and compare.
"$bin" run --design split-hook --huge-pages --external-spt tdx-pool --split-alloc unfilled --dpamt --gib 0.0625 \
  --json "$tmp/huge.json" >"$tmp/huge" 2>&1
check "huge run exits 0" test $? -eq 0
check "huge run demotes" grep -Eq 'huge pages: [0-9]+ splits .* [1-9][0-9]* demotions' "$tmp/huge"
check "huge run shows the page flow" grep -q 'TDX S-EPT pool' "$tmp/huge"
check "huge run replay has the flags" grep -q -- '--huge-pages --dpamt --external-spt tdx-pool --split-alloc unfilled' "$tmp/huge.json"
"$bin" compare --designs baseline,centralized-rfc-fixed,single-hook --huge-pages --gib 0.0625 --json "$tmp/cmp.json" >"$tmp/cmp" 2>&1
check "compare exits 0" test $? -eq 0
check "compare has a column per design" grep -Eq '^ +baseline +centralized-rfc-fixed +single-hook$' "$tmp/cmp"
check "compare shows the refusal" grep -q '^baseline refused: ' "$tmp/cmp"
check "compare shows DEMOTE" grep -q 'TDH.MEM.PAGE.DEMOTE' "$tmp/cmp"
check "compare json has both runs" grep -q '"refused"' "$tmp/cmp.json"
# A selftest with its own flags under two designs.
"$bin" compare demand-paging -v 2 -b 16M --designs upstream,single-hook >"$tmp/cmpst" 2>&1
check "compare demand-paging exits 0" test $? -eq 0
check "compare demand-paging runs its flags' guest" grep -q '^0.03125 GiB, 2 vCPUs, workload demand-paging' "$tmp/cmpst"
check "compare demand-paging has a column per design" grep -Eq '^ +upstream +single-hook$' "$tmp/cmpst"
bad "compare selftest flag out of range" compare demand-paging -v 0 --designs upstream,baseline
bad "compare selftest with --gib" compare dirty-log-perf -b 16M --gib 2 --designs upstream,baseline
bad "compare --mmu with a selftest" compare demand-paging --mmu model,kernel

"$bin" run --help >"$tmp/help" 2>&1
check "help exits 0" test $? -eq 0
check "help lists the baseline design" grep -q 'baseline' "$tmp/help"
check "help lists every design" grep -q 'single-hook' "$tmp/help"
check "help lists td-life" grep -q 'td-life' "$tmp/help"
check "help names the default design's posting" grep -q 'upstream' "$tmp/help"
check "help lists the what-ifs" grep -q 'no-wbinvd' "$tmp/help"

# The what-ifs that must fail do, with exit 1 and the invariant named.
"$bin" run --workload td-life --gib 0.0625 --inline --what-if no-wbinvd >"$tmp/wb" 2>&1
check "no-wbinvd fails the run (exit 1)" test $? -eq 1
check "no-wbinvd names the invariant" grep -q 'cache_not_written_back' "$tmp/wb"
"$bin" run --design hugepage-v5 --huge-pages --tdx-module 1.5.24 --gib 0.0625 --json "$tmp/old.json" >"$tmp/old" 2>&1
check "an older module runs clean" test $? -eq 0
check "an older module maps no 2M page" grep -q 'TDX module 1.5.24' "$tmp/old"
check "an older module is in the replay" grep -q -- '--tdx-module 1.5.24' "$tmp/old.json"
check "enum help is text" test -z "$("$bin" run --help | LC_ALL=C grep -a -P '[^\x09\x0a\x20-\x7e]')"

# Every site, with where it fires, computed from the sources being built.
"$bin" sites --json "$tmp/sites.json" >"$tmp/sites" 2>&1
check "sites exits 0" test $? -eq 0
check "sites lists the map-level KVM_BUG_ON" grep -q '^tdx_set_level  *KVM_BUG_ON' "$tmp/sites"
check "sites gives file:line" grep -Eq '^ +at src/tdx/tdx_merged\.cpp:[0-9]+$' "$tmp/sites"
check "no site is dead" test "$(grep -c 'never fires' "$tmp/sites")" -eq 0
check "sites json" grep -q '"locations"' "$tmp/sites.json"
check "sites before any table says so" grep -q 'run `mirrormmu table` first' "$tmp/sites"

# The transition table, computed for two designs, with their differences.
"$bin" table --designs upstream,hugepage-v5 --executions 2 --format markdown --json "$tmp/table.json" \
  >"$tmp/table" 2>"$tmp/table.err"
check "table exits 0" test $? -eq 0
check "table has upstream" grep -q '^### `upstream`' "$tmp/table"
check "table has hugepage-v5" grep -q '^### `hugepage-v5`' "$tmp/table"
check "table gives replay strings as evidence" grep -q "mirrormmu replay '" "$tmp/table"
check "table gives run commands as evidence" grep -q 'mirrormmu run --workload td-life' "$tmp/table"
check "table drives unreached rows" grep -q 'driven directly: ' "$tmp/table"
check "table shows the differences" grep -q '^### `upstream` vs `hugepage-v5`' "$tmp/table"
check "table json has 64 rows per design" test "$(grep -c '"old":' "$tmp/table.json")" -eq 128
check "table reports progress on stderr" grep -q 'upstream: explore' "$tmp/table.err"
"$bin" sites >"$tmp/sites2" 2>&1
check "sites names the designs that reached a site" grep -q 'reached by: upstream, hugepage-v5' "$tmp/sites2"
for bad in "--designs nosuch" "--format xml" "--executions 0"; do
  # shellcheck disable=SC2086
  "$bin" table $bad >"$tmp/tbad" 2>&1
  check "table $bad exits 2" test $? -eq 2
  check "table $bad is one line" test "$(wc -l <"$tmp/tbad")" -eq 1
done

# shared-life: a plain VM's shared memory, on the model and (in a binary
# built with a kernel tree) on the kernel's own MMU.
"$bin" run --workload shared-life --gib 0.02 --vcpus 2 --json "$tmp/sl.json" >"$tmp/sl" 2>&1
check "shared-life on the model exits 0" test $? -eq 0
check "shared-life says OK" grep -q '^result: OK' "$tmp/sl"
check "shared-life names the model" grep -q 'shared-life on the model MMU' "$tmp/sl"
check "shared-life prints its transitions" grep -q 'nonpresent->leaf shared direct' "$tmp/sl"
check "shared-life json" grep -q '"mmu": "model"' "$tmp/sl.json"
"$bin" run --workload shared-life --mmu kernel --gib 0.02 >"$tmp/slk" 2>"$tmp/slke"
rc=$?
if [ $rc -eq 0 ]; then
  check "shared-life on the kernel names the tree" grep -q 'shared-life on the kernel 6\.12\.[0-9]* MMU' "$tmp/slk"
  check "shared-life on the kernel says OK" grep -q '^result: OK' "$tmp/slk"
  check "the kernel's trace fills the table" grep -q 'leaf->leaf exclusive direct' "$tmp/slk"
else
  check "--mmu kernel without a tree exits 2" test $rc -eq 2
  check "--mmu kernel without a tree says how to get one" grep -q 'make oracle' "$tmp/slke"
fi
"$bin" explore --mmu model --scenario write-vs-dirty-log --preemptions 1 --budget 2000 >"$tmp/pex" 2>&1
check "explore --mmu model exits 0" test $? -eq 0
check "explore --mmu model is exhaustive at one preemption" grep -q 'every schedule within the bound' "$tmp/pex"
"$bin" explore --mmu kernel --scenario fault-vs-fast-zap --strategy pct --budget 20 >"$tmp/kex" 2>"$tmp/kexe"
rc=$?
if [ $rc -eq 0 ]; then
  check "explore --mmu kernel says OK" grep -q '^result: OK' "$tmp/kex"
else
  check "explore --mmu kernel without a tree exits 2" test $rc -eq 2
fi
"$bin" compare --mmu model,model-6.12 --gib 0.02 --huge-pages >"$tmp/cmm" 2>&1
check "compare --mmu exits 0" test $? -eq 0
# In turn, a guest access the tables allow never faults (the TLB and the
# walk serve it) and fast_page_fault() answers a write to a writable leaf
# SPURIOUS on both, so 6.12's rebuild and 6.13's early SPURIOUS agree.
check "compare --mmu model,model-6.12 agrees in turn" grep -q '^every row agrees' "$tmp/cmm"
check "compare --mmu prints the spurious-fault row" grep -Eq '^  spurious faults +[0-9]+ +[0-9]+$' "$tmp/cmm"
if "$bin" compare --mmu model-6.12,kernel --gib 0.02 --huge-pages >"$tmp/cmk" 2>&1; then
  check "model-6.12 and the 6.12 kernel agree on every row" grep -q '^every row agrees' "$tmp/cmk"
fi
"$bin" table --mmu model,model-6.12 --executions 10 >"$tmp/mtab" 2>"$tmp/mtab.err"
check "table --mmu exits 0" test $? -eq 0
check "table --mmu has a direct row reached" grep -q '^non-present -> leaf, shared, direct *reached' "$tmp/mtab"
check "table --mmu reaches no mirror row" test "$(grep -c 'mirror *reached' "$tmp/mtab")" -eq 0
check "table --mmu prints the two MMUs' differences" grep -q '^differences, model vs model-6.12' "$tmp/mtab"
if "$bin" table --mmu kernel --executions 10 >"$tmp/ktab" 2>/dev/null; then
  check "table --mmu kernel names the tree" grep -q 'design kernel 6\.12\.' "$tmp/ktab"
  check "table --mmu kernel: rows from the kernel's own tracepoint" grep -q '^leaf -> leaf, exclusive, direct *reached' "$tmp/ktab"
fi
bad "table --mmu with an unknown MMU" table --mmu nosuch
bad "table --mmu and --designs" table --mmu model --designs upstream
bad "compare with neither designs nor mmu" compare --gib 0.02
bad "compare --mmu with one MMU" compare --mmu model
bad "compare --mmu and --designs" compare --mmu model,kernel --designs upstream,baseline
bad "compare --mmu with an unknown MMU" compare --mmu model,nosuch
bad "compare --mmu with threads" compare --mmu model,model-6.12 --threads
bad "explore --mmu with a TD scenario" explore --mmu model --scenario fault-fault-2m
bad "explore --mmu with a workload" explore --mmu model --workload td-tiny
bad "replay of an unknown plain scenario" replay 'plain:model:nosuch/upstream/s1/f0,0,0,0/'
bad "unknown mmu" run --workload shared-life --mmu nosuch
bad "kernel mmu with a TD workload" run --workload td-life --mmu kernel
bad "model mmu name with td-life is fine, kernel is not" run --workload td-tiny --mmu kernel
bad "a TD flag on shared-life" run --workload shared-life --dpamt
bad "a design on shared-life" run --workload shared-life --design upstream
bad "too much memory for shared-life" run --workload shared-life --gib 65
bad "negative iterations" run --workload shared-life --iterations -1

# Partial-order reduction: on by default for DFS, reported, and it runs
# fewer executions of a race whose steps are partly independent.
red=(explore --scenario plain:model:fast-pf-vs-zap --scale 1 --preemptions 2 --budget 100000 --jobs 1)
"$bin" "${red[@]}" --json "$tmp/red.json" >"$tmp/red" 2>&1
check "reduction reports what it pruned" grep -Eq '^pruned by sleep sets: [1-9][0-9]* branches' "$tmp/red"
"$bin" "${red[@]}" --no-reduction --json "$tmp/nored.json" >"$tmp/nored" 2>&1
check "--no-reduction says so" grep -q '^reduction: off' "$tmp/nored"
check "reduction runs fewer executions" python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); sys.exit(not (a["executions"] < b["executions"] and a["pruned"] > 0 and b["pruned"] == 0 and a["search"]["reduction"] and not b["search"]["reduction"] and a["exhausted"] and b["exhausted"]))' "$tmp/red.json" "$tmp/nored.json"

# Shards: bad specs are refused; N parts of a search, run through GNU
# parallel as a campaign would, merge into what one run reports.
bad "shard out of range" explore --scenario fault-fault-2m --shard 2/2
bad "shard malformed" explore --scenario fault-fault-2m --shard 1of2
bad "shard of nothing" explore --scenario fault-fault-2m --shard 0/0
bad "merge of nothing readable" merge "$tmp/nosuch.json"
echo '{"version": "mirrormmu 0.0.0, explore report 0"}' >"$tmp/old.json"
bad "merge of another version's report" merge "$tmp/old.json"
search=(explore --scenario fault-fault-2m --scale 1 --preemptions 1 --budget 100000)
"$bin" "${search[@]}" --jobs 1 --json "$tmp/whole.json" >"$tmp/whole" 2>&1
check "the unsharded search is exhaustive" grep -q 'every schedule within the bound' "$tmp/whole"
"$bin" "${search[@]}" --shard 0/2 --json "$tmp/d0.json" >/dev/null 2>&1
"$bin" explore --scenario fault-fault-2m --scale 1 --preemptions 1 --budget 100000 --design baseline \
  --shard 1/2 --json "$tmp/other.json" >/dev/null 2>&1
bad "merge of shards of different searches" merge "$tmp/d0.json" "$tmp/other.json"
bad "merge of an incomplete set" merge "$tmp/d0.json"
"$bin" explore --scenario fault-fault-2m --scale 1 --preemptions 1 --budget 100000 --no-reduction \
  --shard 1/2 --json "$tmp/unreduced.json" >/dev/null 2>&1
bad "merge of a reduced and an unreduced shard" merge "$tmp/d0.json" "$tmp/unreduced.json"
bad "merge of a shard twice" merge "$tmp/d0.json" "$tmp/d0.json"
# --jobs: forked parts of the search, merged in the parent; with --shard,
# the jobs of one shard are that shard.
bad "negative jobs" explore --scenario fault-fault-2m --jobs -1
bad "negative seed (would wrap to 2^64-1)" run --seed -1
bad "demand-paging size with a bad suffix" run demand-paging -b 1x
bad "demand-paging size not a page multiple" run demand-paging -b 12
bad "demand-paging size that overflows" run demand-paging -b 99999999999999999999
bad "demand-paging size scaled past 2^64" run demand-paging -b 99999999999t
bad "demand-paging with --gib" run demand-paging --gib 1
bad "demand-paging backing TDX cannot map" run demand-paging -s anonymous_hugetlb_1gb
bad "demand-paging 2M backing without huge pages" run demand-paging -b 4M -s anonymous_hugetlb
bad "dirty-log-perf one iteration" run dirty-log-perf -i 1 -b 8M
bad "dirty-log-perf slots that do not divide" run dirty-log-perf -b 8M -x 3
bad "dirty-log-perf write percent over 100" run dirty-log-perf -w 101
bad "private-mem-conversions slots that do not divide" run private-mem-conversions -m 3
bad "two workloads named" run demand-paging --workload td-life
bad "mmu-stress zero GiB" run mmu-stress -m 0
bad "mmu-stress GiB out of range" run mmu-stress -s 99999999
bad "mmu-stress slot not whole 2M pages" run mmu-stress -m 64M -s 3M -H
bad "mmu-stress size with a bad letter" run mmu-stress -m 64q
bad "mmu-stress vCPUs out of range" run mmu-stress -c 0
bad "mmu-stress with --gib" run mmu-stress --gib 1
bad "pre-fault-memory 2M backing without huge pages" run pre-fault-memory -s anonymous_hugetlb
bad "pre-fault-memory unknown backing" run pre-fault-memory -s tmpfs
bad "guest smaller than a 2 MiB chunk" run --gib 1e-9
bad "guest larger than this machine can model" run --gib 1024
bad "explore time not a number" explore --scenario fault-fault-2m --time nan
bad "check mode unknown" run --check bogus
bad "json into a directory that does not exist" run --gib 0.01 --json "$tmp/no/such/dir/x.json"
mkfifo "$tmp/fifo"
bad "json into a FIFO" run --gib 0.01 --json "$tmp/fifo"
bad "replay perfetto into a FIFO" replay x --perfetto "$tmp/fifo"
bad "jobs on a bad scenario" explore --scenario nosuch --jobs 2
"$bin" "${search[@]}" --jobs 2 --json "$tmp/j2.json" >"$tmp/j2" 2>&1
check "--jobs 2 is exhaustive" grep -q 'every schedule within the bound' "$tmp/j2"
"$bin" "${search[@]}" --jobs 2 --shard 1/2 --json "$tmp/j2s1.json" >/dev/null 2>&1
executions() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["executions"], j["exhausted"], sorted(j["classes"]), j["sites"], sorted(f["invariant"] for f in j["failures"]))' "$1"; }
if command -v parallel >/dev/null; then
  parallel --will-cite --halt now,fail=1 "$bin" "${search[@]}" --shard {}/2 --json "$tmp/p{}.json" '>' /dev/null ::: 0 1
  check "GNU parallel ran both shards" test -s "$tmp/p0.json" -a -s "$tmp/p1.json"
  "$bin" merge "$tmp/p1.json" "$tmp/p0.json" --json "$tmp/merged.json" >"$tmp/merged"
  check "merge exits 0" test $? -eq 0
  check "merged report is exhaustive" grep -q 'every schedule within the bound' "$tmp/merged"
  check "merged equals the unsharded search" test "$(executions "$tmp/merged.json")" = "$(executions "$tmp/whole.json")"
  check "--jobs 2 equals one job" test "$(executions "$tmp/j2.json")" = "$(executions "$tmp/whole.json")"
  "$bin" merge "$tmp/p0.json" "$tmp/j2s1.json" --json "$tmp/merged3.json" >/dev/null
  check "a shard run as two jobs merges like one" test "$(executions "$tmp/merged3.json")" = "$(executions "$tmp/whole.json")"
  # The Slurm job-array script, run as array task 1 of 2 would run it.
  SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=2 MIRRORMMU="$bin" \
    bash "$(dirname "$0")/../scripts/campaign/explore-slurm.sh" "$tmp/slurm" "${search[@]:1}" >/dev/null 2>&1
  check "the Slurm script exits 0" test $? -eq 0
  "$bin" merge "$tmp/p0.json" "$tmp/slurm/shard-1.json" --json "$tmp/merged2.json" >/dev/null
  check "a Slurm shard merges with a parallel one" test "$(executions "$tmp/merged2.json")" = "$(executions "$tmp/whole.json")"
else
  check "GNU parallel is installed (make deps)" false
fi

# Scenario files: every key known, every number whole and in range, the
# memslot layout sane, special files refused; one line, exit 2.
scen() {  # scen NAME JSON
  printf '%s' "$2" >"$tmp/scen-$1.json"
  bad "scenario: $1" explore --scenario "$tmp/scen-$1.json"
}
S0='{"id":0,"gpa":"0x100000000","size":"0x200000","guest_memfd":true}'
T0='{"name":"v","ops":[{"op":"access","gpa":"0x100000000"}]}'
scen "unknown top-level key" "{\"slots\":[$S0],\"threads\":[$T0],\"vcpu\":2}"
scen "unknown op key" "{\"slots\":[$S0],\"threads\":[{\"name\":\"v\",\"ops\":[{\"op\":\"access\",\"pgs\":2}]}]}"
scen "fractional vcpus" "{\"vcpus\":1.5,\"slots\":[$S0],\"threads\":[$T0]}"
scen "negative pages" "{\"slots\":[$S0],\"threads\":[{\"name\":\"v\",\"ops\":[{\"op\":\"access\",\"pages\":-1}]}]}"
scen "hex with trailing garbage" "{\"slots\":[{\"id\":0,\"gpa\":\"0x1000zz\",\"size\":\"0x200000\"}],\"threads\":[$T0]}"
scen "slot of 64 TiB" "{\"slots\":[{\"id\":0,\"gpa\":\"0x100000000\",\"size\":\"0x400000000000\"}],\"threads\":[$T0]}"
scen "slot that wraps" "{\"slots\":[{\"id\":0,\"gpa\":\"0xfffffffffffff000\",\"size\":\"0x2000\"}],\"threads\":[$T0]}"
scen "slot of zero size" "{\"slots\":[{\"id\":0,\"gpa\":\"0x100000000\",\"size\":0}],\"threads\":[$T0]}"
scen "misaligned slot" "{\"slots\":[{\"id\":0,\"gpa\":\"0x100000800\",\"size\":\"0x2000\"}],\"threads\":[$T0]}"
scen "overlapping slots" "{\"slots\":[$S0,{\"id\":1,\"gpa\":\"0x100100000\",\"size\":\"0x200000\"}],\"threads\":[$T0]}"
scen "duplicate slot id" "{\"slots\":[$S0,{\"id\":0,\"gpa\":\"0x200000000\",\"size\":\"0x200000\"}],\"threads\":[$T0]}"
scen "op over 400k pages" "{\"pool_pages\":1048576,\"slots\":[$S0],\"threads\":[{\"name\":\"v\",\"ops\":[{\"op\":\"access\",\"pages\":400000}]}]}"
scen "not JSON" "{\"slots\": ["
bad "scenario: a FIFO" explore --scenario "$tmp/fifo"

# The workloads modelled on the selftests print the selftest's figures.
"$bin" run demand-paging -v 2 -b 8M --json "$tmp/dp.json" >"$tmp/dp" 2>"$tmp/dpe"
check "demand-paging exits 0" test $? -eq 0
check "demand-paging prints the overall rate" grep -q '^Overall demand paging rate:' "$tmp/dp"
check "demand-paging replay command names the test and its flags" grep -q '"replay": "mirrormmu run demand-paging -v 2 -b 8388608 --seed' "$tmp/dp.json"
"$bin" run dirty-log-perf -b 8M -i 3 -g --inline >"$tmp/dl" 2>"$tmp/dle"
check "dirty-log-perf exits 0" test $? -eq 0
check "dirty-log-perf prints each iteration" test "$(grep -c '^Iteration [0-9]* get dirty log time: ' "$tmp/dl")" -eq 3
"$bin" run dirty-log-perf -b 8M --what-if no-wrprot-on-clear >"$tmp/dlw" 2>&1
check "dirty-log-perf catches a clear that does not write-protect" test $? -eq 1
"$bin" run private-mem-conversions -n 2 -m 2 --trace "$tmp/pmc.trace" >"$tmp/pmc" 2>&1
check "private-mem-conversions exits 0" test $? -eq 0
check "private-mem-conversions trace has SEAMCALLs" grep -q ': tdx_seamcall: TDH.MEM.PAGE.AUG ' "$tmp/pmc.trace"
"$bin" run mmu-stress -c 2 -m 64M -s 16M --json "$tmp/ms.json" >"$tmp/ms" 2>&1
check "mmu-stress exits 0" test $? -eq 0
check "mmu-stress prints the stage times" grep -q '^run1 = [0-9.]*s, reset = [0-9.]*s, run2 = [0-9.]*s, ro = [0-9.]*s, rw = [0-9.]*s$' "$tmp/ms"
check "mmu-stress replay command names the test and its flags" grep -q '"replay": "mirrormmu run mmu-stress -c 2 -m 64M -s 16M --seed' "$tmp/ms.json"
"$bin" run mmu-stress -c 2 -m 64M -s 16M --inline --what-if notifier-first-slot-only >"$tmp/msw" 2>&1
check "mmu-stress catches a notifier that misses aliases" test $? -eq 1
check "mmu-stress names the invariant" grep -q '^FAILED: invariant host_prot' "$tmp/msw"
"$bin" run pre-fault-memory >"$tmp/pf" 2>&1
check "pre-fault-memory exits 0" test $? -eq 0
check "pre-fault-memory prints no header the selftest lacks" test -z "$(grep '^Testing ' "$tmp/pf")"
"$bin" run pre-fault-memory --what-if prefault-progress-max-level >"$tmp/pfw" 2>&1
check "pre-fault-memory catches progress past what was mapped" test $? -eq 1
# The workloads' own checks need no checker: with --check off they still fail the run.
"$bin" run mmu-stress -c 2 -m 64M -s 16M --inline --what-if notifier-first-slot-only --check off >"$tmp/msw0" 2>&1
check "mmu-stress --check off still fails on a write to read-only memory" test $? -eq 1
check "mmu-stress --check off names what it saw and when" grep -q '^FAILED: host_prot during operation #[0-9]* (vCPUs write the read-only memory' "$tmp/msw0"
check "mmu-stress --check off does not say OK" grep -q '^result: FAILED$' "$tmp/msw0"
"$bin" run pre-fault-memory --what-if prefault-progress-max-level --check off --json "$tmp/pfw0.json" >"$tmp/pfw0" 2>&1
check "pre-fault-memory --check off still fails" test $? -eq 1
check "pre-fault-memory --check off lists the failure in the json" python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert not j["ok"] and j["violations"][0]["invariant"] == "prefault_unmapped"' "$tmp/pfw0.json"
"$bin" run dirty-log-perf -b 8M --what-if no-wrprot-on-clear --check off >"$tmp/dlw0" 2>&1
check "dirty-log-perf --check off still compares the bitmaps" test $? -eq 1

echo "$pass passed, $fail failed"
test $fail -eq 0
