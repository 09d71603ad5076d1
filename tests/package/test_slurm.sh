#!/bin/bash
# The Slurm scripts of packaging/slurm, end to end, with a stand-in for sbatch that runs the
# array tasks at once as separate processes and the merge after them: the project ends up
# with one merged run over all its images.
#   test_slurm.sh CYTOSAE_BINARY SOURCE_DIR
set -euo pipefail
cli=$1
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir "$work/bin"
cat >"$work/bin/sbatch" <<'EOS'
#!/bin/bash
# Stand-in for sbatch: records the call, runs the job now (array tasks concurrently), prints a job id.
set -euo pipefail
echo "$*" >>"$SBATCH_LOG"
array="" vars="" script=""
for a in "$@"; do
    case $a in
        --array=*) array=${a#--array=} ;;
        --export=*) vars=${a#--export=} ;;
        -*) ;;
        *) script=$a ;;
    esac
done
IFS=, read -ra pairs <<<"$vars"
for p in "${pairs[@]}"; do [ "$p" = ALL ] || export "${p?}"; done
if [ -n "$array" ]; then
    first=${array%-*} last=${array#*-} pids=()
    for ((i = first; i <= last; i++)); do
        SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_TASK_COUNT=$((last - first + 1)) SLURM_CPUS_PER_TASK=1 \
            bash "$script" >"$SBATCH_LOG.task$i" 2>&1 &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || { echo "array task failed" >&2; exit 1; }; done
else
    bash "$script" >"$SBATCH_LOG.job" 2>&1 || { cat "$SBATCH_LOG.job" >&2; exit 1; }
fi
echo $((RANDOM + 1000))
EOS
chmod +x "$work/bin/sbatch"
export PATH="$work/bin:$PATH" SBATCH_LOG="$work/sbatch.log" CYTOSAE="$cli"

"$cli" demo "$work/demo" --patients-per-group 1 --cells 4 --threads 1 >/dev/null 2>&1 || fail "cytosae demo"
"$cli" import "$work/p.cyto" "$work/demo/cohort/manifest.csv" >/dev/null 2>&1 || fail "cytosae import"
out=$("$src/packaging/slurm/submit-sharded-run.sh" "$work/p.cyto" "$src/models/demo/demo_vit.pth" \
    "$src/models/demo/demo_sae.pt" 3) || fail "submit-sharded-run.sh: $(cat "$SBATCH_LOG"* 2>/dev/null)"
echo "$out"
grep -q -- "--array=1-3" "$SBATCH_LOG" || fail "no job array: $(cat "$SBATCH_LOG")"
grep -q -- "--dependency=afterok:" "$SBATCH_LOG" || fail "the merge does not wait for the shards"
for i in 1 2 3; do
    [ -f "$work/shards/shard-$i.cyto" ] || fail "shard $i missing"
    grep -q "shard $i/3 written" "$SBATCH_LOG.task$i" || fail "task $i: $(cat "$SBATCH_LOG.task$i")"
done
grep -q "merged 3 shard(s) into .* 20 image(s) with results" "$SBATCH_LOG.job" || fail "merge: $(cat "$SBATCH_LOG.job")"
stats=$("$cli" stats "$work/p.cyto")
grep -q "20 images with results, 0 errors" <<< "$stats" || fail "stats: $stats"
# Usage errors are caught before anything is submitted.
if "$src/packaging/slurm/submit-sharded-run.sh" "$work/p.cyto" x y zero 2>/dev/null; then fail "bad N accepted"; fi
echo "slurm scripts: ok"
