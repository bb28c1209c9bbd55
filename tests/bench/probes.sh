#!/usr/bin/env bash
# Benchmark: what one exec probe costs, and what probing costs picolet.
#   sudo tests/bench/probes.sh [N]      (N execs per path, default 100)
# 1. Per exec, wall and CPU (user+sys of the command and its children), for
#    the path picolet uses, `runc exec <id> true`, next to entering the
#    container's namespaces with `nsenter -t <pid> -a true` (a lower bound
#    for a setns+fork+exec path: no cgroup join, caps, seccomp or env).
# 2. picolet's CPU (its own plus reaped children, from /proc/<pid>/stat)
#    over 20 s with one pod probed every second by exec, by httpGet, by
#    tcpSocket.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/lib.sh
need_root
n=${1:-100}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q
bin=$target/release/picolet
bash tests/images/build.sh "$target/test-images"

work=$(mktemp -d /tmp/picolet-bench-probes.XXXXXX)
port=$((20000 + RANDOM % 20000))
pid=
finish() {
    [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null || true
    cleanup_root "$work/root"
    rm -rf "$work"
}
trap finish EXIT
mkdir -p "$work"/{manifests,images,logs}
cp "$target/test-images/busybox.tar" "$work/images/"
hz=$(getconf CLK_TCK)

"$bin" --root-dir="$work/root" --pod-manifest-path="$work/manifests" --pod-logs-dir="$work/logs" \
    --image-import-dir="$work/images" --read-only-port="$port" --hostname-override=bench $(host_flags) \
    >"$work/picolet.log" 2>&1 &
pid=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

pod() { # name, probe yaml (one line, flow style)
    cat >"$work/manifests/$1.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $1}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [httpd, -f, -p, "8080", -h, /]
    readinessProbe: $2
YAML
}
wait_ready() {
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$port/pods" | grep -q '"ready":true' && return 0
        sleep 0.1
    done
    echo "pod never ready" >&2; tail -5 "$work/picolet.log" >&2; exit 1
}
cpu_ticks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat"; }

# --- 1. one exec, two paths ---
pod idle '{exec: {command: ["true"]}, periodSeconds: 3600}'
wait_ready
id=$(runc --root "$work/root/runc" list -q | head -1)
cpid=$(runc --root "$work/root/runc" state "$id" | awk -F'[:,]' '/"pid"/ { gsub(/ /, "", $2); print $2 }')
measure() { # label, command...
    local label=$1; shift
    local t0 t1 c0 c1
    c0=$(awk '{ print $16 + $17 }' /proc/$$/stat)
    t0=$(date +%s%N)
    for _ in $(seq "$n"); do "$@" >/dev/null; done
    t1=$(date +%s%N)
    c1=$(awk '{ print $16 + $17 }' /proc/$$/stat)
    awk -v l="$label" -v w=$((t1 - t0)) -v c=$((c1 - c0)) -v n="$n" -v hz="$hz" \
        'BEGIN { printf "%-44s wall %6.1f ms   cpu %6.1f ms\n", l, w / n / 1e6, c * 1000 / hz / n }'
}
echo "per exec, mean of $n:"
measure "runc exec <id> true (picolet's path)" runc --root "$work/root/runc" exec "$id" true
measure "nsenter -t <pid> -a true (setns lower bound)" nsenter -t "$cpid" -a true
rm "$work/manifests/idle.yaml"
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/pods" | grep -q '"items":\[\]' && break; sleep 0.1; done

# --- 2. picolet's CPU while probing every second ---
echo "picolet CPU (own + reaped children) over 20 s, one pod probed every 1 s:"
for kind in ${KINDS:-none exec httpGet tcpSocket}; do
    case $kind in
        none) pod "p-${kind,,}" '{exec: {command: ["true"]}, periodSeconds: 3600}' ;;
        exec) pod "p-${kind,,}" '{exec: {command: ["true"]}, periodSeconds: 1}' ;;
        httpGet) pod "p-${kind,,}" '{httpGet: {port: 8080, path: /etc/hostname}, periodSeconds: 1}' ;;
        tcpSocket) pod "p-${kind,,}" '{tcpSocket: {port: 8080}, periodSeconds: 1}' ;;
    esac
    wait_ready
    sleep 2
    c0=$(cpu_ticks "$pid")
    sleep 20
    c1=$(cpu_ticks "$pid")
    awk -v k="$kind" -v c=$((c1 - c0)) -v hz="$hz" 'BEGIN { printf "  %-10s %6.1f ms CPU per second (one probe), %5.2f %% of a core\n", k, c * 1000 / hz / 20, c * 100 / hz / 20 }'
    rm "$work/manifests/p-${kind,,}.yaml"
    for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/pods" | grep -q '"items":\[\]' && break; sleep 0.1; done
done
