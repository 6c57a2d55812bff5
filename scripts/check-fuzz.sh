#!/usr/bin/env bash
# Bad input, two ways (issue #6):
#  1. libFuzzer targets (fuzz/): the idx loader, the CIFAR-10 loader, the
#     flag/config parser and peer messages (issue #10), built with clang + ASan + UBSan in ./build-fuzz and run for
#     SECONDS each (default 60), starting from the seeds in fuzz/corpus/.
#  2. The bad-input corpus (fuzz/corpus/) through the real pnn-node of ./build: every
#     file as a dataset or --config file; each must end with exit code 0 or 2 and at
#     most one line on stderr, never a crash or a hang.
# Prints one JSON object: inputs tried per target, crashes, corpus outcomes. Exit code
# 0 only when nothing crashed. Not part of .ci/run (the clang build takes ~15 min).
#
# usage: scripts/check-fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
./scripts/install-deps.sh clang libclang-rt-14-dev
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPNN_FUZZ=ON \
  -DPNN_BUILD_TESTS=OFF -DPNN_BUILD_BENCH=OFF -DPNN_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build-fuzz -j "${JOBS:-2}" --target fuzz_idx fuzz_cifar fuzz_config fuzz_peer >&2
[ -x build/runtime/pnn-node ] || ./scripts/build.sh --target pnn-node >&2

export ASAN_OPTIONS=detect_leaks=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:suppressions=$PWD/scripts/ubsan.supp
findings=$PWD/build-fuzz/findings
mkdir -p "$findings"
json_targets=""
crashed=0
for t in idx cifar config peer; do
  work=$PWD/build-fuzz/corpus-$t
  mkdir -p "$work"
  cp -n fuzz/corpus/$t/* "$work"/
  log=build-fuzz/fuzz_$t.log
  # -close_fd_mask=3: the targets' own error lines go nowhere; libFuzzer and the
  # sanitizers still report on their duplicate of stderr.
  rc=0
  build-fuzz/fuzz/fuzz_$t "$work" -max_total_time="$secs" -timeout=20 -rss_limit_mb=3072 \
    -malloc_limit_mb=2048 -close_fd_mask=3 -artifact_prefix="$findings/$t-" >"$log" 2>&1 || rc=$?
  runs=$(grep -o 'Done [0-9]* runs' "$log" | grep -o '[0-9]*' || echo 0)
  corpus=$(ls "$work" | wc -l)
  rss=$(grep -o 'rss: [0-9]*Mb' "$log" | grep -o '[0-9]*' | sort -n | tail -1 || true)
  [ "$rc" -ne 0 ] && crashed=$((crashed + 1)) && echo "fuzz_$t: finding, see $log and $findings" >&2
  json_targets+="\"fuzz_$t\": {\"runs\": ${runs:-0}, \"seconds\": $secs, \"corpus\": $corpus, \"peak_rss_mb\": ${rss:-0}, \"crashed\": $([ "$rc" -eq 0 ] && echo false || echo true)},"
done

# The corpus through the real binary.
node=$PWD/build/runtime/pnn-node
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tried=0; ok=0; refused=0; bad=0
judge() { # $1: what, $2: exit code, $3: stderr file
  tried=$((tried + 1))
  local lines
  lines=$(wc -l <"$3")
  if [ "$2" -eq 0 ]; then ok=$((ok + 1))
  elif [ "$2" -eq 2 ] && [ "$lines" -le 1 ]; then refused=$((refused + 1))
  else bad=$((bad + 1)); echo "corpus: $1: exit code $2, $lines stderr line(s): $(head -c 300 "$3")" >&2
  fi
}
for f in fuzz/corpus/idx/*; do
  d=$tmp/mnist; rm -rf "$d"; mkdir -p "$d"
  len=$(od -An -tu2 -N2 "$f" | tr -d ' ')
  tail -c +3 "$f" | head -c "$len" >"$d/train-images-idx3-ubyte"
  tail -c +$((3 + len)) "$f" >"$d/train-labels-idx1-ubyte"
  cp "$d/train-images-idx3-ubyte" "$d/t10k-images-idx3-ubyte"
  cp "$d/train-labels-idx1-ubyte" "$d/t10k-labels-idx1-ubyte"
  rc=0; timeout 120 "$node" train --dataset mnist --data-dir "$d" --batch-size 2 --progress none \
    --out "$tmp/run" >/dev/null 2>"$tmp/err" || rc=$?
  judge "idx/$(basename "$f")" "$rc" "$tmp/err"
done
for f in fuzz/corpus/cifar/*; do
  d=$tmp/cifar; rm -rf "$d"; mkdir -p "$d"
  for b in data_batch_1 data_batch_2 data_batch_3 data_batch_4 data_batch_5 test_batch; do
    cp "$f" "$d/$b.bin"
  done
  rc=0; timeout 120 "$node" train --dataset cifar10 --data-dir "$d" --batch-size 2 --progress none \
    --out "$tmp/run" >/dev/null 2>"$tmp/err" || rc=$?
  judge "cifar/$(basename "$f")" "$rc" "$tmp/err"
done
verbs=(train kfold hogwild sgd serve)
for f in fuzz/corpus/config/*; do
  verb=${verbs[$(( $(od -An -tu1 -N1 "$f") % 5 ))]}
  tail -c +2 "$f" >"$tmp/run.cfg"
  out=(--out "$tmp/run"); [ "$verb" = serve ] && out=()
  rc=0; timeout 60 "$node" "$verb" --config "$tmp/run.cfg" --dry-run "${out[@]}" >/dev/null \
    2>"$tmp/err" || rc=$?
  judge "config/$(basename "$f") ($verb)" "$rc" "$tmp/err"
done

echo "{${json_targets} \"corpus\": {\"inputs\": $tried, \"accepted\": $ok, \"refused_exit_2\": $refused, \"bad\": $bad}, \"crashed_targets\": $crashed}"
[ "$crashed" -eq 0 ] && [ "$bad" -eq 0 ]
