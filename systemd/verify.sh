#!/bin/bash
# systemd-analyze verify for picolet.service. verify insists that ExecStart's
# binary exists, so (as root, when /usr/local/bin/picolet is absent) a build of
# picolet is put there for the check and removed afterwards.
#   systemd/verify.sh [PICOLET_BINARY]     (default: target/debug/picolet)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-${CARGO_TARGET_DIR:-target}/debug/picolet}
[ -x "$bin" ] || cargo build -q
placed=
if [ ! -e /usr/local/bin/picolet ]; then
    install -m 0755 "$bin" /usr/local/bin/picolet
    placed=1
fi
trap '[ -n "$placed" ] && rm -f /usr/local/bin/picolet' EXIT
out=$(systemd-analyze verify systemd/picolet.service 2>&1) || { echo "$out"; exit 1; }
[ -z "$out" ] || { echo "$out"; exit 1; }
echo "systemd/picolet.service: verify clean"
