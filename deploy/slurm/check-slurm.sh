#!/bin/bash
# Runs pnn.sbatch on real Slurm daemons on this machine: slurmctld and three slurmd
# (nodes pnn1..pnn3 at NodeAddr 127.0.0.1..127.0.0.3, all on this host), with munge
# authenticating them. sbatch --nodes=3 must put the coordinator on pnn1 and a
# `pnn-node serve` on pnn2 and pnn3, and the K-fold must run jobs on both.
#   deploy/slurm/check-slurm.sh PNN_NODE_BINARY
# Needs root and Debian's slurmctld, slurmd and munge (scripts/test.sh installs
# them). The cluster's configuration, state and logs live in a temporary folder
# (SLURM_CONF points there; /etc/slurm is not touched); its job is cancelled and its
# daemons stopped at the end. A munged it had to start keeps running (with a key
# it made if there was none). Exit 77 (skipped): not root, or no Slurm here.
set -euo pipefail
node_bin=$(realpath "${1:?usage: check-slurm.sh path/to/pnn-node}")
here=$(cd "$(dirname "$0")" && pwd)
if [[ $(id -u) != 0 ]]; then
  echo "check-slurm.sh: needs root (slurmd runs as root here)" >&2
  exit 77
fi
if ! command -v slurmctld > /dev/null || ! command -v slurmd > /dev/null \
  || ! command -v munged > /dev/null; then
  echo "check-slurm.sh: slurmctld, slurmd and munge are not installed" >&2
  exit 77
fi
work=$(mktemp -d /tmp/pnn-slurm.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  if [[ -n ${SLURM_CONF:-} ]]; then # the job's steps (slurmstepd, serve) end first
    scancel --full -u "$(id -un)" 2> /dev/null || true
    for _ in $(seq 30); do
      [[ -z $(squeue -h 2> /dev/null) ]] && break
      sleep 1
    done
  fi
  ((${#pids[@]} == 0)) || kill "${pids[@]}" 2> /dev/null || true
  wait 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if ! munge -n > /dev/null 2>&1; then
  mkdir -p /run/munge
  chown munge:munge /run/munge
  if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile /etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
  fi
  su -s /bin/sh munge -c /usr/sbin/munged
  munge -n > /dev/null
fi

base=$((20000 + RANDOM % 20000))
host=$(hostname -s)
mkdir -p "$work/state" "$work/spool"
{
  echo "ClusterName=pnncheck"
  echo "SlurmctldHost=$host(127.0.0.1)"
  echo "SlurmctldPort=$base"
  echo "SlurmUser=root"
  echo "SlurmdUser=root"
  echo "AuthType=auth/munge"
  echo "CredType=cred/munge"
  echo "StateSaveLocation=$work/state"
  echo "SlurmdSpoolDir=$work/spool/%n"
  echo "SlurmctldPidFile=$work/slurmctld.pid"
  echo "SlurmdPidFile=$work/slurmd-%n.pid"
  echo "SlurmctldLogFile=$work/slurmctld.log"
  echo "SlurmdLogFile=$work/slurmd-%n.log"
  echo "ProctrackType=proctrack/linuxproc"
  echo "TaskPlugin=task/none"
  echo "JobAcctGatherType=jobacct_gather/none"
  echo "SchedulerType=sched/builtin"
  echo "SelectType=select/linear"
  echo "ReturnToService=2"
  echo "MpiDefault=none"
  for i in 1 2 3; do
    echo "NodeName=pnn$i NodeHostname=$host NodeAddr=127.0.0.$i Port=$((base + i)) CPUs=2 State=UNKNOWN"
  done
  echo "PartitionName=pnn Nodes=pnn[1-3] Default=YES MaxTime=INFINITE State=UP"
} > "$work/slurm.conf"
export SLURM_CONF=$work/slurm.conf

slurmctld -D -i > "$work/slurmctld.out" 2>&1 &
pids+=($!)
for i in 1 2 3; do
  slurmd -D -N "pnn$i" > "$work/slurmd-pnn$i.out" 2>&1 &
  pids+=($!)
done
ready=
for _ in $(seq 60); do
  if [[ $(sinfo -h -N -o '%N %t' 2> /dev/null | grep -c ' idle') == 3 ]]; then
    ready=1
    break
  fi
  sleep 1
done
if [[ -z $ready ]]; then
  echo "check-slurm.sh: the three nodes did not come up idle:" >&2
  sinfo -N >&2 || true
  tail -n 20 "$work"/*.log "$work"/*.out >&2 || true
  exit 1
fi
sinfo -N

export PNN_NODE=$node_bin PNN_PORT=$((base + 100))
timeout 240 sbatch --wait --time=3 --nodes=3 --chdir="$work" --output="$work/job.out" \
  "$here/pnn.sbatch" \
  kfold --dataset synthetic:train=120,test=10 --models lenet5 --schedulers none --folds 4 \
  --epochs 1 --progress none --no-report --out "$work/run" \
  || { echo "check-slurm.sh: the job failed" >&2; cat "$work/job.out" >&2; exit 1; }
cat "$work/job.out"
grep -q "serve on 127.0.0.2:$PNN_PORT 127.0.0.3:$PNN_PORT" "$work/job.out" \
  || { echo "check-slurm.sh: the coordinator was not given both serve nodes" >&2; exit 1; }
# A remote job's host is the node's label, hostname:port (the same name for both
# here: one machine).
hosts=$(grep -o "\"host\": \"[^\"]*\"" "$work/run/summary.json" | sort | uniq -c || true)
echo "$hosts"
[[ $(grep -c ":$PNN_PORT\"" <<< "$hosts") -ge 1 ]] \
  || { echo "check-slurm.sh: no job ran on a serve node" >&2; exit 1; }
echo "pnn.sbatch on Slurm $(sinfo -V | cut -d' ' -f2): ok"
