#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# One shard of an exploration per Slurm array task; `mirrormmu merge` puts
# them together afterwards.
#
#   sbatch --array=0-63 scripts/campaign/explore-slurm.sh OUTDIR --scenario fault-vs-delete --preemptions 3
#   mirrormmu merge OUTDIR/shard-*.json --json OUTDIR/merged.json
#
# Every task runs the same search (the same arguments) and explores the
# shard its array index names, of as many shards as the array has tasks.
# MIRRORMMU names the binary (default: mirrormmu on PATH); it must be the
# same build on every node, or merge refuses the reports.
#SBATCH --job-name=mirrormmu-explore
#SBATCH --cpus-per-task=1
#SBATCH --output=mirrormmu-explore-%A_%a.log
set -euo pipefail
out=${1:?usage: explore-slurm.sh OUTDIR EXPLORE-ARGS...}
shift
i=${SLURM_ARRAY_TASK_ID:?run this as a Slurm job array (sbatch --array=0-N)}
n=${SLURM_ARRAY_TASK_COUNT:?run this as a Slurm job array (sbatch --array=0-N)}
mkdir -p "$out"
# Exit 1 means "found something": the report is written either way.
"${MIRRORMMU:-mirrormmu}" explore "$@" --shard "$i/$n" --json "$out/shard-$i.json" || test $? -eq 1
