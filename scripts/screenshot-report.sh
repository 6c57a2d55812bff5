#!/usr/bin/env bash
# Renders a run's report.html in headless Chromium (Debian's chromium) and writes a PNG
# of the whole page: how docs/report-screenshot.png was made, and a check that the
# page and its plots load in a browser.
#   scripts/screenshot-report.sh RUN_DIR OUT.png [HEIGHT]
set -euo pipefail
dir=$(cd "$1" && pwd)
out=$2
height=${3:-7000}
[ -f "$dir/report.html" ] || { echo "screenshot-report.sh: $dir/report.html: no report (pnn-node report $1)"; exit 2; }
command -v chromium >/dev/null || { echo "screenshot-report.sh: needs chromium (apt-get install chromium)"; exit 2; }
# --no-sandbox: chromium's sandbox refuses to run as root (CI, containers).
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --allow-file-access-from-files \
  --window-size=1000,"$height" --screenshot="$out" "file://$dir/report.html" 2>/dev/null
[ -s "$out" ] && echo "$out"
