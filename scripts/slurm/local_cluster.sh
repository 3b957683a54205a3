#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for testing the sbatch template (tests/test_slurm.py).
#
#   scripts/slurm/local_cluster.sh start DIR   # munged + slurmctld + slurmd, all state/logs/sockets under DIR
#   export SLURM_CONF=DIR/slurm.conf           # then sbatch/squeue/scontrol/scancel talk to it
#   scripts/slurm/local_cluster.sh stop DIR    # kills exactly the daemons started for DIR (by their pid files)
#
# Needs root and Debian's packages: apt-get install -y slurm-wlm munge (Slurm 22.05 on Debian 12).
# Nothing outside DIR is written: its own munge key and socket, its own ports (free ones, picked at start).
# Deliberately minimal: no cgroups (proctrack/linuxproc, task/none), no accounting, JobRequeue=1,
# one partition "local" with this machine as its only node (CPUs and memory as `slurmd -C` reports them).
set -euo pipefail

usage() { echo "usage: $0 {start|stop|status} DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)

stop_daemons() {
    local name pid
    for name in slurmd slurmctld munged; do
        [ -f "$dir/$name.pid" ] || continue
        pid=$(cat "$dir/$name.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$dir/$name.pid"
    done
}

free_ports() {  # two distinct TCP ports nobody listens on now
    python3 -c 'import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))'
}

cancel_jobs() {  # so that no job processes outlive the daemons
    [ -f "$dir/slurm.conf" ] && [ -f "$dir/slurmctld.pid" ] || return 0
    export SLURM_CONF="$dir/slurm.conf"
    local jobs
    jobs=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
    [ -n "$jobs" ] || return 0
    timeout 10 scancel --full $jobs 2>/dev/null || true
    for _ in $(seq 30); do
        [ -z "$(timeout 10 squeue -h -t running,completing -o %i 2>/dev/null || true)" ] && break
        sleep 0.5
    done
}

case "$cmd" in
stop)
    cancel_jobs
    stop_daemons
    echo "local Slurm cluster in $dir stopped"
    ;;
status)
    export SLURM_CONF="$dir/slurm.conf"
    sinfo
    ;;
start)
    for exe in munged slurmctld slurmd sbatch; do
        command -v "$exe" >/dev/null || { echo "error: $exe not found; apt-get install -y slurm-wlm munge" >&2; exit 3; }
    done
    [ "$(id -u)" -eq 0 ] || { echo "error: the local cluster runs slurmd as root; run as root" >&2; exit 3; }
    cancel_jobs; stop_daemons  # a previous cluster in the same DIR
    chmod 755 "$dir"
    mkdir -p "$dir/munge" "$dir/ctld" "$dir/spool" "$dir/log"
    chmod 700 "$dir/munge"

    # munge: a private key and socket, so the system's munged (if any) is neither used nor disturbed.
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1 count=1024 status=none
    chmod 400 "$dir/munge/munge.key"
    munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munge.seed"

    host=$(hostname -s)
    node=$(slurmd -C | head -n1)                 # NodeName=host CPUs=.. Boards=.. ... RealMemory=..
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
    node=$(sed "s/RealMemory=[0-9]*/RealMemory=$((mem * 9 / 10))/" <<<"$node")
    read -r ctld_port d_port < <(free_ports)

    cat >"$dir/slurm.conf" <<EOF
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also delays a requeued job's restart (default 120 s)
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=${SLURM_LOCAL_CRED_EXPIRE:-10}
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
JobRequeue=1
ReturnToService=2
KillWait=10
MinJobAge=3600
SchedulerParameters=sched_interval=2
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -i   # -i: ignore state left by an earlier cluster in DIR
    slurmd
    for _ in $(seq 60); do  # wait for the node to register
        state=$(sinfo -h -N -o %t 2>/dev/null | head -n1 || true)
        case "$state" in idle|mix|alloc) echo "local Slurm cluster up: SLURM_CONF=$SLURM_CONF (node $host: $state)"; exit 0 ;; esac
        sleep 0.5
    done
    echo "error: the node did not come up (state '${state:-?}'); logs in $dir/log:" >&2
    tail -n 20 "$dir"/log/*.log >&2 || true
    stop_daemons
    exit 1
    ;;
*) usage ;;
esac
