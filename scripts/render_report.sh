#!/usr/bin/env bash
# Screenshot a tumsyn HTML report headless with Debian's chromium (apt-get install -y chromium).
# Usage: scripts/render_report.sh OUT_DIR/sub-01.html report.png [WIDTH HEIGHT]
set -euo pipefail
html=$(realpath "$1")
png=$(realpath -m "$2")
width=${3:-1100}
height=${4:-2200}
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" \
  --hide-scrollbars --window-size="${width},${height}" --screenshot="$png" "file://$html" 2>/dev/null
echo "$png"
