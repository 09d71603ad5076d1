#!/bin/bash
# Submits a sharded CytoSAE run to Slurm: a job array of N shard tasks, then a merge job that
# runs only when all of them succeeded.
#
#   submit-sharded-run.sh PROJECT VIT SAE N [SHARD_DIR]
#
# Extra sbatch options (partition, account, GPUs) go in SBATCH_SHARD_OPTIONS and
# SBATCH_MERGE_OPTIONS, e.g. SBATCH_SHARD_OPTIONS="--partition=gpu --gres=gpu:1" DEVICE=cuda.
# Submitting the same command again resumes unfinished shards; finished ones return at once.
set -euo pipefail

if [ $# -lt 4 ] || [ $# -gt 5 ]; then
    echo "usage: $0 PROJECT VIT SAE N [SHARD_DIR]" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
PROJECT=$(abs "$1")
VIT=$(abs "$2")
SAE=$(abs "$3")
SHARDS=$4
case "$SHARDS" in '' | *[!0-9]*) echo "N must be a positive number, not '$SHARDS'" >&2; exit 2 ;; esac
[ "$SHARDS" -ge 1 ] || { echo "N must be at least 1" >&2; exit 2; }
SHARD_DIR=${5:-$(dirname "$PROJECT")/shards}
mkdir -p "$SHARD_DIR"
SHARD_DIR=$(cd "$SHARD_DIR" && pwd)
for f in "$PROJECT" "$VIT" "$SAE"; do
    [ -f "$f" ] || { echo "$f: file not found" >&2; exit 1; }
done

# The jobs get the settings through the environment and plain --export=ALL: naming variables in
# --export (ALL,PROJECT=...) makes Slurm also load the user's login environment (su - USER) into
# every job, as --get-user-env does.
export PROJECT VIT SAE SHARDS SHARD_DIR
# shellcheck disable=SC2086 # the option variables are meant to split into words
array=$(sbatch --parsable --array=1-"$SHARDS" --export=ALL ${SBATCH_SHARD_OPTIONS:-} \
    "$here/cytosae-shards.sbatch")
array=${array%%;*} # "jobid;cluster" on multi-cluster sites
# shellcheck disable=SC2086
merge=$(sbatch --parsable --dependency=afterok:"$array" --kill-on-invalid-dep=yes --export=ALL ${SBATCH_MERGE_OPTIONS:-} \
    "$here/cytosae-merge.sbatch")
echo "submitted shards as job array $array (1-$SHARDS) and the merge as job ${merge%%;*}"
echo "shard databases: $SHARD_DIR; watch with: squeue -j $array,${merge%%;*}"
