#!/usr/bin/env bash
# The newcomer's command: installs what picolet needs, builds it, and runs it
# standalone on the pods in examples/ (a web server on :8080, a pod with an
# init container, a crash-looping pod), prints their table, and keeps running
# until Ctrl-C, which stops picolet and its pods.
#   tests/demo.sh              as root
#   tests/demo.sh --headless   prints the table, then stops everything and exits (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
headless=0
case ${1:-} in
--headless) headless=1 ;;
"") ;;
*) echo "usage: tests/demo.sh [--headless]" >&2; exit 2 ;;
esac
source tests/lib.sh
need_root
install_deps demo

demo=${PICOLET_DEMO_DIR:-/tmp/picolet-demo}
port=${PICOLET_DEMO_PORT:-10255}
cargo build --release
bin=${CARGO_TARGET_DIR:-target}/release/picolet

cleanup_root "$demo/root"
rm -rf "$demo"
mkdir -p "$demo"/{manifests,images,logs}
# Images come from archives, not a registry: build busybox into one.
bash tests/images/build.sh "${CARGO_TARGET_DIR:-target}/test-images"
cp "${CARGO_TARGET_DIR:-target}/test-images/busybox.tar" "$demo/images/"
cp examples/*.yaml "$demo/manifests/"

# With cgroup v2 controllers, the pods' tree goes under a cgroup of its own (as
# the systemd unit's config.yaml does), not below this shell's session scope,
# whose delegated controllers vary; without them, upstream's switches.
demo_cgroup_flags() {
    if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
        echo "--cgroup-root=/picolet-demo"
    else
        host_flags
    fi
}

"$bin" --root-dir="$demo/root" --pod-manifest-path="$demo/manifests" --pod-logs-dir="$demo/logs" \
    --image-import-dir="$demo/images" --read-only-port="$port" $(demo_cgroup_flags) >"$demo/picolet.log" 2>&1 &
pid=$!
stop() {
    kill "$pid" 2>/dev/null || true
    cleanup_root "$demo/root"
    echo "stopped picolet and its pods"
}
trap stop EXIT

pods() { curl -sf "http://127.0.0.1:$port/pods"; }
wait_for() { # description, command
    local what=$1
    shift
    for _ in $(seq 600); do
        "$@" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$demo/picolet.log"; echo "picolet exited" >&2; exit 1; }
        sleep 0.1
    done
    echo "timed out waiting for $what" >&2
    cat "$demo/picolet.log" >&2
    exit 1
}
crashlooping() { pods | jq -e '.items[] | select(.metadata.name | startswith("crasher")) | .status.containerStatuses[0].state.waiting.reason == "CrashLoopBackOff"' | grep -q true; }

wait_for "the read-only API" pods
wait_for "the web server" curl -sf http://127.0.0.1:8080/
echo "web pod answers on :8080 -> $(curl -s http://127.0.0.1:8080/)"
wait_for "the crash loop" crashlooping
echo
pods | jq -r '["POD","PHASE","CONTAINER","STATE","RESTARTS"],
  (.items[] | .metadata.name as $n | .status.phase as $p |
   ((.status.initContainerStatuses // []) + .status.containerStatuses)[] |
   [$n, $p, .name, (.state | keys[0]) + (if .state.waiting then "(" + .state.waiting.reason + ")" elif .state.terminated then "(" + .state.terminated.reason + ")" else "" end), .restartCount])
  | @tsv' | awk -F'\t' '{ for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } n = NF }
      END { for (r = 1; r <= NR; r++) { line = ""; for (i = 1; i <= n; i++) line = line sprintf(i < n ? "%-" w[i] + 2 "s" : "%s", cell[r, i]); print line } }'
if ((headless)); then
    exit 0
fi
cat <<MSG

picolet is running (pid $pid). Try:
  curl -s http://127.0.0.1:$port/pods | jq '.items[].status.phase'
  cat $demo/logs/default_greeter-*/app/0.log
  ls $demo/logs/default_crasher-*/app/
  $bin images list --root-dir=$demo/root
Its own log: $demo/picolet.log. Press Ctrl-C to stop.
MSG
wait "$pid"
