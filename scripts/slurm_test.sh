#!/usr/bin/env bash
# Run two demo participants through nipype's SLURM plugin on a one-node SLURM cluster on localhost.
#
#   scripts/slurm_test.sh            # needs root (apt-get, munged, slurmctld, slurmd)
#
# Installs Debian's slurm-wlm + munge when missing, writes a private slurm.conf (cons_tres,
# proctrack/linuxproc, no cgroups, no accounting) under SLURM_DIR, starts munged, slurmctld and
# slurmd, checks a plain sbatch job, then runs
#   tumsyn-bids DEMO OUT participant --participant-label A B --use-plugin slurm.yml
# and checks that every participant's synthesized image exists and that SLURM ran the nodes.
# The daemons it started are stopped on exit. Environment: SLURM_DIR (default /var/tmp/tumsyn-slurm),
# MUNGE_DIR (munged's socket, pid and log; default /var/tmp/tumsyn-munge),
# DEMO (default bids_examples/demo), DEMO_ARGS, PLUGIN (SLURM or SLURMGraph, default SLURM),
# TUMSYN_BIDS (the command, default tumsyn-bids on PATH).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SLURM_DIR=${SLURM_DIR:-/var/tmp/tumsyn-slurm}
DEMO=${DEMO:-$REPO/bids_examples/demo}
DEMO_ARGS=${DEMO_ARGS:---target T2w}
PLUGIN=${PLUGIN:-SLURM}
TUMSYN_BIDS=${TUMSYN_BIDS:-tumsyn-bids}
export SLURM_CONF=$SLURM_DIR/etc/slurm.conf
# munged runs as user munge: its socket and files live where that user can reach them.
MUNGE_DIR=${MUNGE_DIR:-/var/tmp/tumsyn-munge}
# nipype's SLURM plugin polls `squeue -u $LOGNAME` and fails without it (containers, CI runners).
export LOGNAME=${LOGNAME:-$(id -un)}
PIDS=()

step() { printf '\n== %s\n' "$*"; }
fail() {
    printf 'SLURM FAIL: %s\n' "$*" >&2
    for log in slurmctld slurmd; do
        [[ -f $SLURM_DIR/log/$log.log ]] && { echo "--- $log.log (tail)"; tail -n 15 "$SLURM_DIR/log/$log.log"; } >&2
    done
    exit 1
}

cleanup() {
    local pidfile
    for pidfile in "$SLURM_DIR/run/slurmd.pid" "$SLURM_DIR/run/slurmctld.pid" "$MUNGE_DIR/munged.pid"; do
        [[ -f $pidfile ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

install_slurm() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return
    step "installing slurm-wlm and munge from Debian"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
}

start_munge() {
    step "munge"
    mkdir -p "$MUNGE_DIR"
    chown munge: "$MUNGE_DIR"
    chmod 755 "$MUNGE_DIR"
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null ||
            dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 status=none
        chown munge: /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    # A private socket, so a munged started by someone else is never disturbed.
    export MUNGE_SOCKET=$MUNGE_DIR/munge.socket
    runuser -u munge -- munged --socket "$MUNGE_SOCKET" --pid-file "$MUNGE_DIR/munged.pid" \
        --log-file "$MUNGE_DIR/munged.log" --seed-file "$MUNGE_DIR/munged.seed" --force
    munge -n --socket "$MUNGE_SOCKET" | unmunge --socket "$MUNGE_SOCKET" >/dev/null || fail "munge round trip failed"
    echo "munged up ($MUNGE_SOCKET)"
}

write_conf() {
    local node_line
    node_line=$(slurmd -C | head -n1)
    mkdir -p "$SLURM_DIR"/{etc,state,spool,log,run}
    cat >"$SLURM_CONF" <<EOF
ClusterName=tumsyn-test
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6917
SlurmdPort=6918
AuthType=auth/munge
AuthInfo=socket=$MUNGE_DIR/munge.socket
CryptoType=crypto/munge
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/run/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/run/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=30
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start_slurm() {
    step "slurmctld + slurmd on localhost"
    write_conf
    slurmctld -f "$SLURM_CONF" -i || fail "slurmctld did not start"
    slurmd -f "$SLURM_CONF" || fail "slurmd did not start"
    for _ in $(seq 60); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed)'; then
            sinfo
            return
        fi
        sleep 1
    done
    fail "node never became idle: $(sinfo -h -o '%T %E' 2>&1)"
}

check_sbatch() {
    step "plain sbatch job"
    local out=$SLURM_DIR/hello.out job
    rm -f "$out"
    # shellcheck disable=SC2016 # expanded by the job's shell, not here
    job=$(sbatch --parsable -o "$out" --wrap 'echo "hello from job $SLURM_JOB_ID on $(hostname)"')
    for _ in $(seq 60); do
        if [[ -s $out ]] && [[ -z $(squeue -h -j "$job" 2>/dev/null) ]]; then
            break
        fi
        sleep 1
    done
    cat "$out" || fail "job $job wrote no output"
}

run_demo() {
    [[ -d $DEMO ]] || fail "demo dataset $DEMO not found"
    local subjects
    mapfile -t subjects < <(find "$DEMO" -maxdepth 1 -name 'sub-*' -type d -printf '%f\n' | sort | head -n 2)
    ((${#subjects[@]} == 2)) || fail "need two participants in $DEMO, found ${#subjects[@]}"
    local out=$SLURM_DIR/out work=$SLURM_DIR/work plugin=$SLURM_DIR/plugin.yml
    rm -rf "$out" "$work"
    cat >"$plugin" <<EOF
plugin: $PLUGIN
plugin_args:
  sbatch_args: "--cpus-per-task=1 --mem=3000"
  poll_sleep_duration: 1
  max_tries: 2
  retry_timeout: 5
EOF
    [[ $PLUGIN == SLURMGraph ]] && sed -i '/poll_sleep_duration\|max_tries\|retry_timeout/d' "$plugin"
    step "tumsyn-bids participant ${subjects[*]} --use-plugin ($PLUGIN)"
    cat "$plugin"
    local start=$SECONDS rc=0
    # shellcheck disable=SC2086 # DEMO_ARGS is a list of options
    "$TUMSYN_BIDS" "$DEMO" "$out" participant --participant-label "${subjects[@]#sub-}" $DEMO_ARGS \
        --use-plugin "$plugin" -w "$work" || rc=$?
    echo "participant level via $PLUGIN: exit $rc in $((SECONDS - start)) s"
    ((rc == 0)) || fail "tumsyn-bids exited $rc"
    local sub
    for sub in "${subjects[@]}"; do
        compgen -G "$out/$sub/anat/*_desc-tumsyn_*.nii.gz" >/dev/null ||
            compgen -G "$out/$sub/ses-*/anat/*_desc-tumsyn_*.nii.gz" >/dev/null ||
            fail "no synthesized image for $sub"
    done
    (cd "$out" && find . -name '*.nii.gz' | sort)
    # Proof that SLURM ran the nodes: nipype's batch scripts and the controller's job records.
    local scripts jobs
    scripts=$(find "$work" -path '*batch*' -name '*.sh' | wc -l)
    jobs=$(grep -c 'sched: Allocate JobId' "$SLURM_DIR/log/slurmctld.log" || true)
    echo "nipype batch scripts: $scripts; jobs allocated by slurmctld: $jobs"
    ((scripts > 0 && jobs > 1)) || fail "the workflow did not go through SLURM"
}

main() {
    install_slurm
    rm -rf "$SLURM_DIR"
    mkdir -p "$SLURM_DIR"/{log,run}
    start_munge
    start_slurm
    check_sbatch
    run_demo
    echo
    echo "SLURM OK"
}

main "$@"
