#!/bin/bash
# The examples as a user meets them (ctest example.documented):
# - every program of examples/*.cpp answers --help (exit 0, "usage: NAME ...") and
#   refuses an unknown flag with one line on stderr naming it (exit 2);
# - every command line README.md and docs/*.md show for an example
#   ("./build/examples/NAME ...") runs as written from a folder where ./build is this
#   build, and exits 0. A line with --hosts 127.0.0.1:PORT gets a `pnn-node serve`
#   there first (the docs' "terminal 1"), on a free port put in PORT's place, and an
#   output folder under /tmp/ goes under this check's own temporary folder instead.
#
#   tests/examples/check-documented.sh SOURCE_DIR BUILD_DIR
set -u
src=$1
build=$2
work=$(mktemp -d)
serve_pid=
cleanup() {
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
ln -s "$build" "$work/build"
mkdir "$work/tmp"
failed=0
fail() {
  echo "FAIL: $*"
  failed=1
}

for source in "$src"/examples/*.cpp; do
  name=$(basename "$source" .cpp)
  exe=$build/examples/$name
  if [ ! -x "$exe" ]; then
    fail "$name: no program $exe"
    continue
  fi
  "$exe" --help >"$work/help" 2>&1
  rc=$?
  if [ $rc != 0 ] || ! grep -q "^usage: $name " "$work/help"; then
    fail "$name --help: exit $rc, $(head -1 "$work/help")"
  fi
  "$exe" --no-such-flag >/dev/null 2>"$work/err"
  rc=$?
  if [ $rc != 2 ] || [ "$(wc -l <"$work/err")" != 1 ] || ! grep -q -- "--no-such-flag" "$work/err"; then
    fail "$name --no-such-flag: exit $rc, stderr: $(cat "$work/err")"
  else
    echo "ok: $name --help; $name --no-such-flag: $(cat "$work/err")"
  fi
done

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts a serve node on a free port, kept in $port.
start_serve() {
  port=$(free_port)
  "$build/runtime/pnn-node" serve --port "$port" --slots 2 >"$work/serve.log" 2>&1 &
  serve_pid=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
}

# Every documented command line: "./build/examples/NAME" and its arguments, up to a
# comment, a backtick or the end of the line.
grep -ho '\./build/examples/[a-z_]*[^#`]*' "$src/README.md" "$src"/docs/*.md | sed 's/[[:space:]]*$//' \
  | sort -u >"$work/commands"
[ -s "$work/commands" ] || fail "no documented example command found"
while read -r command; do
  if [[ $command =~ --hosts\ 127\.0\.0\.1:([0-9]+) ]]; then
    start_serve
    command=${command//127.0.0.1:${BASH_REMATCH[1]}/127.0.0.1:$port}
  fi
  command=${command// \/tmp\// $work\/tmp\/}
  echo "run: $command"
  (cd "$work" && timeout 600 bash -c "$command" </dev/null >"$work/out" 2>&1)
  rc=$?
  if [ $rc != 0 ]; then
    fail "$command: exit $rc"
    tail -5 "$work/out"
  else
    echo "  ok: $(tail -1 "$work/out")"
  fi
  if [ -n "$serve_pid" ]; then
    kill "$serve_pid" 2>/dev/null
    wait "$serve_pid" 2>/dev/null
    serve_pid=
  fi
done <"$work/commands"
exit $failed
