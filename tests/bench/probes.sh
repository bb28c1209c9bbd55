#!/usr/bin/env bash
# Benchmark: what one exec probe costs, and what probing costs picolet.
#   sudo tests/bench/probes.sh [N]      (N execs per path, default 100)
# 1. Per exec, wall and CPU (user+sys of the command and its children): the
#    CLI `runc exec <id> true`, `nsenter -t <pid> -a true` (setns lower bound:
#    no caps, user, env), and picolet's own two exec paths timed in-process
#    (an ignored unit test in src/probe/run.rs): its setns+fork+exec path and
#    its `runc exec` path, each as wall and picolet's CPU (self + children).
# 2. picolet's CPU (its own plus reaped children, from /proc/<pid>/stat
#    fields 14-17) over 20 s with one pod probed every second by exec, by
#    httpGet, by tcpSocket (KINDS picks), and exec again with PICOLET_EXEC=runc.
# 3. PODS (default 30) pods, each busybox httpd with an httpGet readiness
#    probe and an exec liveness probe (`true`), at the default period (10 s)
#    and at 1 s, with each exec path (PATHS, default "setns runc"): picolet's
#    CPU over WINDOW s (default 60).  SECTIONS="1 2 3" picks sections.
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

start_picolet() { # exec path for PICOLET_EXEC: setns (default) or runc
    stop_picolet
    PICOLET_EXEC=$1 "$bin" --root-dir="$work/root" --pod-manifest-path="$work/manifests" --pod-logs-dir="$work/logs" \
        --image-import-dir="$work/images" --read-only-port="$port" --hostname-override=bench $(host_flags) \
        >>"$work/picolet.log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && return 0; sleep 0.1; done
    echo "picolet did not start" >&2; tail -5 "$work/picolet.log" >&2; exit 1
}
stop_picolet() {
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
}
sections=${SECTIONS:-1 2 3}
start_picolet setns

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
wait_ready() { # [count, default 1]
    local want=${1:-1}
    for _ in $(seq 1200); do
        [[ $(curl -sf "http://127.0.0.1:$port/pods" | grep -o '"ready":true' | wc -l) -ge $want ]] && return 0
        sleep 0.1
    done
    echo "pods never ready" >&2; tail -5 "$work/picolet.log" >&2; exit 1
}
wait_empty() {
    for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/pods" | grep -q '"items":\[\]' && return 0; sleep 0.1; done
    echo "pods never went away" >&2; exit 1
}
cpu_ticks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat"; }

# --- 1. one exec, each path ---
if [[ " $sections " == *" 1 "* ]]; then
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
measure "runc exec <id> true (CLI)" runc --root "$work/root/runc" exec "$id" true
measure "nsenter -t <pid> -a true (setns lower bound)" nsenter -t "$cpid" -a true
# picolet's own paths, in-process (see exec_cost in src/probe/run.rs).
PICOLET_BENCH_ROOT="$work/root" PICOLET_BENCH_ID="$id" PICOLET_BENCH_N="$n" \
    cargo test --release -q --bin picolet probe::run::tests::exec_cost -- --ignored --nocapture 2>/dev/null | grep '^picolet'
rm "$work/manifests/idle.yaml"
wait_empty
fi

# --- 2. picolet's CPU while probing every second ---
window() { # label, seconds: picolet's CPU over the next <seconds>
    local c0 c1
    c0=$(cpu_ticks "$pid")
    sleep "$2"
    c1=$(cpu_ticks "$pid")
    awk -v k="$1" -v c=$((c1 - c0)) -v hz="$hz" -v s="$2" 'BEGIN { printf "  %-28s %7.1f ms CPU per second, %6.2f %% of a core\n", k, c * 1000 / hz / s, c * 100 / hz / s }'
}
if [[ " $sections " == *" 2 "* ]]; then
echo "picolet CPU (own + reaped children) over 20 s, one pod probed every 1 s:"
for kind in ${KINDS:-none exec httpGet tcpSocket exec-runc}; do
    case $kind in
        none) pod "p-${kind,,}" '{exec: {command: ["true"]}, periodSeconds: 3600}' ;;
        exec*) pod "p-${kind,,}" '{exec: {command: ["true"]}, periodSeconds: 1}' ;;
        httpGet) pod "p-${kind,,}" '{httpGet: {port: 8080, path: /etc/hostname}, periodSeconds: 1}' ;;
        tcpSocket) pod "p-${kind,,}" '{tcpSocket: {port: 8080}, periodSeconds: 1}' ;;
    esac
    [[ $kind == exec-runc ]] && start_picolet runc
    wait_ready
    sleep 2
    window "$kind" 20
    rm "$work/manifests/p-${kind,,}.yaml"
    wait_empty
    [[ $kind == exec-runc ]] && start_picolet setns
done
fi

# --- 3. many pods, http readiness + exec liveness ---
if [[ " $sections " == *" 3 "* ]]; then
pods=${PODS:-30}
win=${WINDOW:-60}
echo "picolet CPU over $win s, $pods pods each with an httpGet readiness and an exec liveness probe:"
for path in ${PATHS:-setns runc}; do
    start_picolet "$path"
    for period in default 1; do
        if [[ $period == default ]]; then extra=; else extra=", periodSeconds: $period"; fi
        for i in $(seq "$pods"); do
            cat >"$work/manifests/m-$i.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: m-$i}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [httpd, -f, -p, "8080", -h, /]
    readinessProbe: {httpGet: {port: 8080, path: /etc/hostname}$extra}
    livenessProbe: {exec: {command: ["true"]}$extra}
YAML
        done
        wait_ready "$pods"
        sleep 5
        l0=$(grep -c "Liveness probe failed" "$work/picolet.log" || true)
        window "exec=$path period=$period" "$win"
        l1=$(grep -c "Liveness probe failed" "$work/picolet.log" || true)
        [[ $l1 == "$l0" ]] || echo "  ($((l1 - l0)) liveness failures in the window)"
        rm -f "$work/manifests"/m-*.yaml
        wait_empty
    done
done
fi
stop_picolet
