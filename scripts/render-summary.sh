#!/usr/bin/env bash
# Render a run summary (or any local HTML page) to PNG with headless Chromium from
# Debian's packages (apt-get install chromium). No network is used.
#   scripts/render-summary.sh PAGE.html [OUT.png] [WIDTH,HEIGHT]
#   scripts/render-summary.sh .s1mig/exports/2020-08-06/run-summary.html summary.png 1400,2400
# OUT.png defaults to PAGE.png beside the page; the window (and so the picture) is
# 1400,1600 pixels unless WIDTH,HEIGHT is given (a long summary needs a taller one).
set -euo pipefail
html=$(realpath "$1"); png=$(realpath -m "${2:-${1%.html}.png}"); size=${3:-1400,1600}
[[ $size =~ ^[0-9]+,[0-9]+$ ]] || { echo "window size is WIDTH,HEIGHT in pixels, not: $size" >&2; exit 2; }
chrome=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$chrome" ] || { echo "chromium not found: apt-get install chromium" >&2; exit 2; }
profile=$(mktemp -d); trap 'rm -rf "$profile"' EXIT
"$chrome" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size="$size" \
  --screenshot="$png" "file://$html" >/dev/null 2>&1
[ -s "$png" ] && echo "$png"
