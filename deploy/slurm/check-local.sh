#!/bin/bash
# Runs pnn.sbatch as Slurm would on a 3-node allocation, on this machine without
# Slurm: stand-ins for scontrol (the node list: node1, node2, node3, at NodeAddr
# 127.0.0.1, 127.0.0.2, 127.0.0.3) and srun (one task per listed node, with its
# SLURMD_NODENAME, its `hostname` answering its name). The coordinator on node1
# must run a K-fold on both serve nodes. (deploy/slurm/check-slurm.sh runs the
# same on real slurmctld and slurmd daemons.)
#   deploy/slurm/check-local.sh PNN_NODE_BINARY
set -euo pipefail
node_bin=$(realpath "${1:?usage: check-local.sh path/to/pnn-node}")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin"
cat > "$work/bin/scontrol" <<'S'
#!/bin/bash
if [[ $1 == show && $2 == hostnames ]]; then
  printf 'node1\nnode2\nnode3\n'
elif [[ $1 == show && $2 == node ]]; then # node<i>'s NodeAddr is 127.0.0.<i>
  echo "NodeName=$3 Arch=x86_64 CoresPerSocket=1"
  echo "   NodeAddr=127.0.0.${3#node} NodeHostName=$3 Version=22.05.8"
else
  exit 1
fi
S
cat > "$work/bin/srun" <<'S'
#!/bin/bash
# srun --nodes=N --ntasks=N --ntasks-per-node=1 --nodelist=a,b cmd...: cmd on each node.
list=
while [[ $1 == --* ]]; do
  [[ $1 == --nodelist=* ]] && list=${1#--nodelist=}
  shift
done
pids=()
IFS=, read -ra nodes <<< "$list"
for n in "${nodes[@]}"; do
  mkdir -p "$FAKE_ROOT/$n"
  printf '#!/bin/bash\necho %s\n' "$n" > "$FAKE_ROOT/$n/hostname"
  chmod +x "$FAKE_ROOT/$n/hostname"
  SLURMD_NODENAME=$n PATH="$FAKE_ROOT/$n:$PATH" "$@" &
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null' TERM
wait
S
chmod +x "$work/bin/scontrol" "$work/bin/srun"
export FAKE_ROOT=$work/nodes SLURM_JOB_NODELIST="node[1-3]" PNN_NODE=$node_bin
export PNN_PORT=$((20000 + RANDOM % 20000))
PATH="$work/bin:$PATH" bash "$here/pnn.sbatch" kfold --dataset synthetic:train=120,test=10 \
  --models lenet5 --schedulers none --folds 4 --epochs 1 --progress none --no-report \
  --out "$work/run" > "$work/out.txt" 2>&1 || { cat "$work/out.txt"; exit 1; }
# pnn-node exits 0 only when every job succeeded; a serve node must have taken some.
grep -q "\"host\": \"[^\"]*:$PNN_PORT\"" "$work/run/summary.json" \
  || { echo "no job ran on a serve node" >&2; cat "$work/out.txt"; exit 1; }
grep -q "serve on 127.0.0.2:$PNN_PORT 127.0.0.3:$PNN_PORT" "$work/out.txt" \
  || { echo "the coordinator was not given both serve nodes" >&2; cat "$work/out.txt"; exit 1; }
echo "pnn.sbatch: ok"
