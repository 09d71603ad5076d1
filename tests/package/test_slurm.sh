#!/bin/bash
# The Slurm scripts of packaging/slurm, end to end: the project ends up with one merged run over
# all its images.
#   test_slurm.sh CYTOSAE_BINARY SOURCE_DIR
#
# Where it can (root, and the slurm-wlm and munge packages that scripts/setup.sh installs), the
# test starts a private one-node Slurm cluster: its own munged, slurmctld and slurmd, with the
# config, key, ports, state and logs in a temporary folder (SLURM_CONF points there), and submits
# through the real sbatch. A shard of the first submission fails, so Slurm must cancel that merge;
# the same command submitted again resumes the shards and merges. Where the daemons cannot start,
# it falls back to a stand-in for sbatch that runs the array tasks at once and the merge after
# them. The first line of its output says which one ran.
#   CYTOSAE_REQUIRE_REAL_SLURM=1  the fallback to the stand-in is a failure
#   CYTOSAE_SLURM_STANDIN=1       use the stand-in even where a real cluster could start
set -euo pipefail
cli=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") # absolute: the jobs run elsewhere
src=$(cd "$2" && pwd)
work=$(mktemp -d)
cluster=$work/cluster
PATH=$PATH:/usr/sbin:/sbin # the daemons, for a PATH without them

# Stops the private cluster (if any): its jobs, its daemons, then any process still holding a file
# in the test's folder. Run by the trap, and by the watchdog if the test is killed outright.
cat >"$work/cleanup.sh" <<'EOS'
work=$1 c=$1/cluster
[ -d "$c" ] || exit 0
export SLURM_CONF=$c/slurm.conf
ours() { [ -n "$1" ] && tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -qF "$c"; }
if ours "$(cat "$c/slurmctld.pid" 2>/dev/null)"; then
    ids=$(timeout 10 squeue -h -o %A 2>/dev/null | sort -u)
    if [ -n "$ids" ]; then
        # shellcheck disable=SC2086
        timeout 10 scancel $ids 2>/dev/null
        for _ in $(seq 20); do
            [ -z "$(timeout 5 squeue -h -o %A 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
fi
pids=()
for d in slurmd slurmctld munged; do
    pid=$(cat "$c/$d.pid" 2>/dev/null) || continue
    ours "$pid" && kill "$pid" 2>/dev/null && pids+=("$pid")
done
for _ in $(seq 20); do
    left=()
    for pid in "${pids[@]}"; do ours "$pid" && left+=("$pid"); done
    [ ${#left[@]} -eq 0 ] && break
    sleep 0.25
done
for pid in "${left[@]}"; do kill -9 "$pid" 2>/dev/null; done
# Job steps and their children: processes with a file open, or their working directory, in $work.
for pid in $(find /proc/[0-9]*/cwd /proc/[0-9]*/fd -maxdepth 1 \( -lname "$work" -o -lname "$work/*" \) 2>/dev/null |
    cut -d/ -f3 | sort -u); do
    [ "$pid" = $$ ] || [ "$pid" = "$PPID" ] || kill -9 "$pid" 2>/dev/null
done
exit 0
EOS
cleanup() {
    cd /
    if [ -f "$work/watchdog.pid" ]; then kill "$(cat "$work/watchdog.pid")" 2>/dev/null || true; fi
    bash "$work/cleanup.sh" "$work" || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
fail() {
    echo "FAIL: $*" >&2
    if [ "${real:-0}" = 1 ]; then
        echo "--- squeue / scontrol show job:" >&2
        timeout 20 squeue -t all 2>&1 | head -n 20 >&2 || true
        timeout 20 scontrol -o show job 2>&1 | head -n 20 >&2 || true
        for f in "$cluster"/log/*; do echo "--- $f:" >&2; tail -n 15 "$f" >&2; done
    fi
    exit 1
}

# Why a private cluster cannot start here; nothing if it can try.
why_not_real() {
    [ "${CYTOSAE_SLURM_STANDIN:-0}" = 1 ] && { echo "CYTOSAE_SLURM_STANDIN=1"; return; }
    [ "$(id -u)" -eq 0 ] || { echo "not root"; return; }
    local c
    for c in munged slurmctld slurmd sbatch squeue sinfo scontrol scancel; do
        command -v "$c" >/dev/null || { echo "no $c (scripts/setup.sh installs slurm-wlm and munge)"; return; }
    done
}
port_free() { ! grep -qi ":$(printf %04X "$1") " /proc/net/tcp /proc/net/tcp6 2>/dev/null; }
port_listening() { grep -qiE ":$(printf %04X "$1") [0-9A-F]+:0000 0A " /proc/net/tcp /proc/net/tcp6 2>/dev/null; }
pick_port() { # a free TCP port in 20000-59999 other than $1
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 40000))
        [ "$p" != "${1:-}" ] && port_free "$p" && { echo "$p"; return 0; }
    done
    return 1
}
# Starts munged, slurmctld and slurmd of a private one-node cluster and waits until the node is
# idle. On failure: sets `reason` and returns 1 (the trap stops whatever did start).
start_cluster() {
    local node nodeline mem ctld_port slurmd_port i
    mkdir -p "$cluster/state" "$cluster/spool" "$cluster/log"
    node=$(hostname -s)
    nodeline=$(slurmd -C 2>&1 | head -n 1)
    case $nodeline in "NodeName=$node "*) ;; *) reason="slurmd -C: $nodeline"; return 1 ;; esac
    mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$nodeline")
    [ "${mem:-0}" -ge 2000 ] || { reason="$node has only ${mem:-?} MB of memory"; return 1; }
    if ! ctld_port=$(pick_port) || ! slurmd_port=$(pick_port "$ctld_port"); then reason="no free port"; return 1; fi
    # A watchdog, outside the test's process tree, cleans up if the test is killed before its trap.
    # shellcheck disable=SC2016
    (cd / && setsid -f bash -c 'echo $$ >"$2/watchdog.pid"
        while kill -0 "$1" 2>/dev/null && [ -d "$2" ]; do sleep 1; done
        [ -d "$2" ] && bash "$2/cleanup.sh" "$2" && rm -rf "$2"' watchdog $$ "$work" </dev/null >/dev/null 2>&1)

    head -c 1024 /dev/urandom >"$cluster/munge.key"
    chmod 600 "$cluster/munge.key"
    munged -F -f --socket="$cluster/munge.socket" --key-file="$cluster/munge.key" \
        --pid-file="$cluster/munged.pidfile" --seed-file="$cluster/munged.seed" \
        --log-file="$cluster/log/munged.log" >"$cluster/log/munged.log" 2>&1 &
    echo $! >"$cluster/munged.pid"
    for ((i = 0; i < 40; i++)); do
        munge -n --socket="$cluster/munge.socket" 2>/dev/null | unmunge --socket="$cluster/munge.socket" >/dev/null 2>&1 && break
        kill -0 "$(cat "$cluster/munged.pid")" 2>/dev/null || { reason="munged exited: $(tail -n 2 "$cluster/log/munged.log")"; return 1; }
        sleep 0.25
    done
    [ "$i" -lt 40 ] || { reason="munged does not answer"; return 1; }

    cat >"$cluster/slurm.conf" <<EOF
# The private cluster of test_slurm.sh
ClusterName=tst$$r$RANDOM
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$cluster/munge.socket
StateSaveLocation=$cluster/state
SlurmdSpoolDir=$cluster/spool
SlurmctldPidFile=$cluster/slurmctld.pidfile
SlurmdPidFile=$cluster/slurmd.pidfile
SlurmctldLogFile=$cluster/log/slurmctld.log
SlurmdLogFile=$cluster/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerParameters=sched_interval=5,bf_interval=5
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MessageTimeout=30
SlurmctldTimeout=60
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=600
$nodeline NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$cluster/slurm.conf
    slurmctld -D -f "$SLURM_CONF" >>"$cluster/log/slurmctld.out" 2>&1 &
    echo $! >"$cluster/slurmctld.pid"
    slurmd -D -N "$node" -f "$SLURM_CONF" >>"$cluster/log/slurmd.out" 2>&1 &
    echo $! >"$cluster/slurmd.pid"
    local d t0=$SECONDS
    while :; do # the clients retry for long while nothing listens: ask only once slurmctld does
        for d in slurmctld slurmd; do
            kill -0 "$(cat "$cluster/$d.pid")" 2>/dev/null ||
                { reason="$d exited: $(cat "$cluster/log/$d".* | grep -v pmix | tail -n 2 | tr '\n' ' ')"; return 1; }
        done
        if port_listening "$ctld_port"; then
            [ "$(timeout 10 sinfo -h -n "$node" -o %T 2>/dev/null)" = idle ] && break
        fi
        [ $((SECONDS - t0)) -lt 30 ] || { reason="node not idle after 30 s: $(port_listening "$ctld_port" &&
            timeout 10 sinfo -h -o '%T %E' 2>&1)"; return 1; }
        sleep 0.25
    done
    echo "tst_slurm: real Slurm $(sinfo -V | awk '{print $NF}') one-node cluster" \
        "($nodeline; ports $ctld_port, $slurmd_port)"
}

# Waits until none of the jobs (comma-separated ids) is pending or running any more. Fails early
# when all that is left has waited 30 s on a dependency that can never be satisfied (Slurm cancels
# such jobs, submitted with --kill-on-invalid-dep=yes, within seconds).
wait_jobs() {
    local out stuck=""
    while :; do
        if out=$(squeue -h -j "$1" -o '%i %T %r' 2>&1); then
            [ -n "$out" ] || return 0
            if grep -qv " DependencyNeverSatisfied$" <<<"$out"; then
                stuck=""
            else
                : "${stuck:=$SECONDS}"
                [ $((SECONDS - stuck)) -lt 30 ] || fail "left waiting forever: $out"
            fi
        fi
        [ "$SECONDS" -lt "$deadline" ] || fail "jobs $1 still not done after $limit s: $out"
        sleep 0.5
    done
}
# JobState (or another field) of each job or array task matching $1, one a line.
job_field() { scontrol -o show job "$1" | grep -o " $2=[^ ]*" | cut -d= -f2; }
task_field() { scontrol -o show job "$1" | grep " ArrayTaskId=$2 " | grep -o " $3=[^ ]*" | cut -d= -f2; }
submit() { # sets `array` and `merge`, the job ids that submit-sharded-run.sh reports
    local out
    out=$("$src/packaging/slurm/submit-sharded-run.sh" "$work/p.cyto" "$src/models/demo/demo_vit.pth" \
        "$src/models/demo/demo_sae.pt" 3) || fail "submit-sharded-run.sh: $(cat "$SBATCH_LOG" 2>/dev/null)"
    echo "$out"
    read -r array merge < <(sed -n \
        's/^submitted shards as job array \([0-9]*\) (1-3) and the merge as job \([0-9]*\)$/\1 \2/p' <<<"$out") ||
        fail "no job ids in: $out"
}

"$cli" demo "$work/demo" --patients-per-group 1 --cells 4 --threads 1 >/dev/null 2>&1 || fail "cytosae demo"
"$cli" import "$work/p.cyto" "$work/demo/cohort/manifest.csv" >/dev/null 2>&1 || fail "cytosae import"
reason=$(why_not_real)
if [ -z "$reason" ]; then
    # Nothing of an enclosing Slurm job (or the user's sbatch defaults) may reach the private cluster.
    while read -r v; do unset "$v"; done < <(env | sed -n 's/^\(\(SLURM\|SBATCH\)_[A-Za-z0-9_]*\)=.*/\1/p')
fi
mkdir "$work/bin"
export SBATCH_LOG="$work/sbatch.log" CYTOSAE="$cli"
cd "$work" # the jobs' output files land here
real=0
if [ -z "$reason" ]; then
    if start_cluster; then real=1; else bash "$work/cleanup.sh" "$work"; fi # stop what did start
fi

if [ "$real" = 1 ]; then
    limit=200 deadline=$((SECONDS + 200))
    # sbatch records the call and hands it on to the real one.
    # shellcheck disable=SC2016 # the $ are for the wrapper
    printf '#!/bin/bash\necho "$*" >>"$SBATCH_LOG"\nexec %q "$@"\n' "$(command -v sbatch)" >"$work/bin/sbatch"
    chmod +x "$work/bin/sbatch"
    export PATH="$work/bin:$PATH"
    # The scripts ask for 8 CPUs and 16G (shards), 2 CPUs and 8G (merge): shrink them to this node.
    export SBATCH_SHARD_OPTIONS="--cpus-per-task=1 --mem=1500M" SBATCH_MERGE_OPTIONS="--cpus-per-task=1 --mem=1500M"
    export DEVICE=cpu # the tasks' threads then follow --cpus-per-task, checked below
    # First submission: shard 2 fails, so its merge can never run and Slurm cancels it.
    cat >"$work/flaky-cytosae" <<EOS
#!/bin/bash
env >"$work/env-\$SLURM_JOB_ID"
if [ "\${SLURM_ARRAY_TASK_ID:-}" = 2 ] && [ -e "$work/fail-shard-2" ]; then echo "shard 2 fails on purpose" >&2; exit 3; fi
exec "$cli" "\$@"
EOS
    chmod +x "$work/flaky-cytosae"
    touch "$work/fail-shard-2"
    CYTOSAE="$work/flaky-cytosae" submit
    array1=$array merge1=$merge
    grep -q -- "--array=1-3" "$SBATCH_LOG" || fail "no job array: $(cat "$SBATCH_LOG")"
    grep -q -- "--dependency=afterok:$array1 " "$SBATCH_LOG" || fail "the merge does not wait for the shards"
    wait_jobs "$array1,$merge1"
    for i in 1 3; do
        [ "$(task_field "$array1" "$i" JobState)" = COMPLETED ] || fail "shard $i of job $array1 did not complete"
        grep -q "shard $i/3 written" "cytosae-shard-${array1}_$i.log" || fail "task $i: $(cat "cytosae-shard-${array1}_$i.log")"
        grep -q "on cpu (1 threads)" "cytosae-shard-${array1}_$i.log" || fail "task $i: threads do not follow --cpus-per-task=1"
    done
    [ "$(task_field "$array1" 2 JobState)" = FAILED ] || fail "shard 2 of job $array1: $(task_field "$array1" 2 JobState)"
    [ "$(job_field "$merge1" JobState)" = CANCELLED ] ||
        fail "merge $merge1 after a failed shard: $(job_field "$merge1" JobState), not CANCELLED"
    [ ! -e "cytosae-merge-$merge1.log" ] || fail "the merge ran after a failed shard"
    # The same command again: shards 1 and 3 are done already, shard 2 runs, then the merge.
    rm "$work/fail-shard-2"
    CYTOSAE="$work/flaky-cytosae" submit
    wait_jobs "$array,$merge"
    [ "$(job_field "$merge" JobState)" = COMPLETED ] || fail "merge $merge: $(job_field "$merge" JobState)"
    merge_start=$(job_field "$merge" StartTime)
    for i in 1 2 3; do
        [ "$(task_field "$array" "$i" JobState)" = COMPLETED ] || fail "shard $i of job $array did not complete"
        end=$(task_field "$array" "$i" EndTime)
        [[ ! "$merge_start" < "$end" ]] || fail "the merge started at $merge_start, before shard $i ended at $end"
        [ -f "$work/shards/shard-$i.cyto" ] || fail "shard $i missing"
    done
    grep -q "shard 2/3 written" "cytosae-shard-${array}_2.log" || fail "task 2: $(cat "cytosae-shard-${array}_2.log")"
    merge_log=cytosae-merge-$merge.log
    # --export=ALL,VAR=... would make slurmd load the user's login environment (su - USER) into every job.
    if grep -l '^SLURM_GET_USER_ENV=' "$work"/env-*; then fail "jobs submitted with --get-user-env"; fi
else
    [ "${CYTOSAE_REQUIRE_REAL_SLURM:-0}" != 1 ] || fail "CYTOSAE_REQUIRE_REAL_SLURM=1, but no real Slurm: $reason"
    echo "tst_slurm: stand-in sbatch (reason: $reason)"
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
    export PATH="$work/bin:$PATH"
    submit
    grep -q -- "--array=1-3" "$SBATCH_LOG" || fail "no job array: $(cat "$SBATCH_LOG")"
    grep -q -- "--dependency=afterok:" "$SBATCH_LOG" || fail "the merge does not wait for the shards"
    for i in 1 2 3; do
        [ -f "$work/shards/shard-$i.cyto" ] || fail "shard $i missing"
        grep -q "shard $i/3 written" "$SBATCH_LOG.task$i" || fail "task $i: $(cat "$SBATCH_LOG.task$i")"
    done
    merge_log=$SBATCH_LOG.job
fi

grep -q "merged 3 shard(s) into .* 20 image(s) with results" "$merge_log" || fail "merge: $(cat "$merge_log")"
stats=$("$cli" stats "$work/p.cyto")
grep -q "20 images with results, 0 errors" <<<"$stats" || fail "stats: $stats"
# Usage errors are caught before anything is submitted.
if "$src/packaging/slurm/submit-sharded-run.sh" "$work/p.cyto" x y zero 2>/dev/null; then fail "bad N accepted"; fi
if [ "$real" = 1 ]; then echo "slurm scripts: ok (real Slurm)"; else echo "slurm scripts: ok (stand-in sbatch)"; fi
