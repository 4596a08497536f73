#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for tests/test_slurm.py and for trying profiles/slurm by hand.
#
#   tests/slurm/cluster.sh start    # install slurm-wlm + munge if missing (apt-get), configure, start, wait for idle
#   tests/slurm/cluster.sh stop     # stop the daemons this script started (by their pid files), remove its configs
#   tests/slurm/cluster.sh status   # sinfo, or exit 1 when the cluster is not up
#
# Needs root (apt-get, daemons run as root). One node named after this host, all its CPUs and (most of) its
# memory, one partition `debug` (default). No accounting database: AccountingStorageType=accounting_storage/none,
# so `sacct` cannot answer and job status has to come from `squeue` (profiles/slurm sets
# `slurm-status-command: squeue`); MinJobAge=600 keeps finished jobs visible to squeue long enough for that.
# Without cgroups (containers, gVisor): proctrack/linuxproc, task/none.
#
# GPUs: the node offers the machine's NVIDIA GPUs as GRES gpu (type `gpu`, device files /dev/nvidiaN); without any,
# LPA_SLURM_FAKE_GPUS (default 2) fake ones of type `fake` (stand-in device files, no CUDA), so that jobs asking
# for GPUs (sbatch --gpus=N / --gpus=fake:N, as the executor submits the `gpu` resource) are accepted and
# scheduled; 0 turns that off.
#
# Env: LPA_SLURM_DIR (state, logs, pid files; default /var/tmp/lpa-slurm), LPA_SLURM_PARTITION (default debug),
#      LPA_SLURM_WAIT (seconds to wait for the node to turn idle; default 60), LPA_SLURM_FAKE_GPUS (default 2).
# The script refuses to overwrite an /etc/slurm/slurm.conf it did not write (a real cluster's config).
set -euo pipefail

DIR=${LPA_SLURM_DIR:-/var/tmp/lpa-slurm}
PARTITION=${LPA_SLURM_PARTITION:-debug}
FAKE_GPUS=${LPA_SLURM_FAKE_GPUS:-2}
WAIT=${LPA_SLURM_WAIT:-60}
CONF=/etc/slurm/slurm.conf
GRES_CONF=/etc/slurm/gres.conf
MARK="# written by lpa-bench tests/slurm/cluster.sh"

log() { echo "cluster.sh: $*" >&2; }
die() { log "$*"; exit 1; }

install_if_missing() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "slurm/munge missing and no apt-get to install them"
    log "installing slurm-wlm munge (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null; } ||
        die "apt-get install slurm-wlm munge failed"
}

write_conf() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    # slurmd -C reports what the node really has; leave 512 MB for the OS and the daemons
    mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    mem=$(( ${mem:-2048} > 1024 ? ${mem:-2048} - 512 : ${mem:-2048} ))
    for f in "$CONF" "$GRES_CONF"; do
        if [ -f "$f" ] && ! grep -qF "$MARK" "$f"; then
            die "$f exists and was not written by this script; not touching a real cluster's config"
        fi
    done
    mkdir -p /etc/slurm "$DIR"/{ctld,d,log}
    # GPUs: the real ones if any, else fakes
    local gres="" ngpu
    ngpu=$( (ls /dev/nvidia[0-9]* 2>/dev/null || true) | wc -l)
    { echo "$MARK"; } > "$GRES_CONF"
    if [ "$ngpu" -gt 0 ]; then
        gres=" Gres=gpu:gpu:$ngpu"
        echo "NodeName=$host Name=gpu Type=gpu File=/dev/nvidia[0-$((ngpu - 1))]" >> "$GRES_CONF"
    elif [ "$FAKE_GPUS" -gt 0 ]; then
        # slurmd counts GPUs by their device files: give it stand-ins (character devices like /dev/null, plain
        # files where mknod is not allowed; task/none: nothing is constrained either way)
        for i in $(seq 0 $((FAKE_GPUS - 1))); do
            rm -f "$DIR/fake-gpu$i"; mknod "$DIR/fake-gpu$i" c 1 3 2>/dev/null || : > "$DIR/fake-gpu$i"
        done
        gres=" Gres=gpu:fake:$FAKE_GPUS"
        echo "NodeName=$host Name=gpu Type=fake File=$DIR/fake-gpu[0-$((FAKE_GPUS - 1))]" >> "$GRES_CONF"
    fi
    cat > "$CONF" <<EOF
$MARK
ClusterName=lpa
GresTypes=gpu
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
MinJobAge=600
DefMemPerCPU=500
KillWait=5
SlurmctldTimeout=30
SlurmdTimeout=30
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN$gres
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    if [ ! -s /etc/munge/munge.key ]; then
        if command -v mungekey >/dev/null; then mungekey -c -f -k /etc/munge/munge.key; else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; fi
    fi
    if id munge >/dev/null 2>&1; then
        chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
        chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key; chmod 0755 /run/munge
        su -s /bin/sh munge -c "munged --pid-file=/run/munge/munged.pid" 2>/dev/null ||
            munged --force --pid-file=/run/munge/munged.pid
    else
        munged --force --pid-file=/run/munge/munged.pid
    fi
    for _ in $(seq 50); do
        if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
            cp /run/munge/munged.pid "$DIR/munged.pid" 2>/dev/null || true  # ours: stop ends it, a pre-existing one stays
            return 0
        fi
        sleep 0.2
    done
    die "munged did not come up"
}

node_state() { { sinfo -h -N -o %T 2>/dev/null || true; } | head -1; }

start() {
    [ "$(id -u)" -eq 0 ] || die "must run as root"
    install_if_missing
    mkdir -p "$DIR"
    write_conf
    start_munge
    running "$DIR/slurmctld.pid" || slurmctld -f "$CONF"  # daemonizes; -c would wipe state: not needed
    running "$DIR/slurmd.pid" || slurmd -f "$CONF"
    local state="" ok=0
    for _ in $(seq $(( WAIT * 2 ))); do
        state=$(node_state)
        case "$state" in
            idle|mixed|allocated)  # twice in a row: a node with a config problem turns idle, then drained
                ok=$((ok + 1))
                if [ "$ok" -ge 2 ]; then log "node $(hostname -s) is $state, partition $PARTITION"; sinfo >&2; return 0; fi ;;
            down*|drain*|fail*) ok=0; scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true ;;
            *) ok=0 ;;
        esac
        sleep 0.5
    done
    log "node did not turn idle in ${WAIT}s (state: '${state:-none}'); logs in $DIR/log"
    tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 2>/dev/null || true
    exit 1
}

stop_pidfile() {
    local name=$1 pidfile=$2 pid
    running "$pidfile" || { rm -f "$pidfile"; return 0; }
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || { log "stopped $name ($pid)"; rm -f "$pidfile"; return 0; }; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

stop() {
    # cancel whatever is still queued or running, then the daemons in reverse order of start
    running "$DIR/slurmctld.pid" && scancel --full --quiet --partition "$PARTITION" 2>/dev/null || true
    stop_pidfile slurmd "$DIR/slurmd.pid"
    stop_pidfile slurmctld "$DIR/slurmctld.pid"
    stop_pidfile munged "$DIR/munged.pid"
    # and the configs this script wrote: a slurm.conf whose controller is down costs every Slurm client call its
    # connect timeout, and the Slurm executor plugin runs `scontrol show config` whenever Snakemake starts (10 s)
    local f
    for f in "$CONF" "$GRES_CONF"; do
        if [ -f "$f" ] && grep -qF "$MARK" "$f"; then rm -f "$f"; log "removed $f"; fi
    done
}

status() {
    local state
    state=$(node_state)
    case "$state" in idle|mixed|allocated|completing) sinfo; return 0 ;; esac
    echo "cluster not up (node state: '${state:-none}')" >&2
    return 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
