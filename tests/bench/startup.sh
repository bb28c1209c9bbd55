#!/usr/bin/env bash
# Benchmark: stripped binary size, picolet's memory idle and with N pods, and
# the time from a manifest appearing to its container running, next to bare
# `runc run -d` of the same image on the same machine in the same run.
#   sudo tests/bench/startup.sh [N]      (N pods, default 30)
# "Running" is when the container's first output line reaches its CRI log
# (the log line's own timestamp), so the figure includes picolet noticing
# the file, importing nothing (image present), creating the bundle, runc
# create + start, and the log pump.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/lib.sh
need_root
install_deps
n=${1:-30}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q
bin=$target/release/picolet
bash tests/images/build.sh "$target/test-images"

work=$(mktemp -d /tmp/picolet-bench.XXXXXX)
port=$((20000 + RANDOM % 20000))
pid=
finish() {
    [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null || true
    cleanup_root "$work/root"
    for id in $(runc --root "$work/bare-runc" list -q 2>/dev/null); do
        runc --root "$work/bare-runc" delete -f "$id" >/dev/null 2>&1 || true
    done
    umount -l "$work/bare/rootfs" 2>/dev/null || true
    rm -rf "$work"
}
trap finish EXIT
[[ -n ${KEEP_LOG:-} ]] && trap 'cp "$work/picolet.log" /tmp/bench-picolet.log; finish' EXIT
mkdir -p "$work"/{manifests,images,logs}
cp "$target/test-images/busybox.tar" "$work/images/"

mem() { # pid -> "rss_kib pss_kib"
    local rss pss
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$1/status")
    pss=$(awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup")
    echo "$rss $pss"
}
ms() { awk -v ns="$1" 'BEGIN { printf "%.1f", ns / 1e6 }'; }
percentiles() { # file of ns values -> "p50 p99" in ms
    sort -n "$1" | awk '{ v[NR] = $1 } END {
        p50 = v[int((NR - 1) * 0.50) + 1]; p99 = v[int((NR - 1) * 0.99) + 1];
        printf "%.1f %.1f\n", p50 / 1e6, p99 / 1e6 }'
}

"$bin" --root-dir="$work/root" --pod-manifest-path="$work/manifests" --pod-logs-dir="$work/logs" \
    --image-import-dir="$work/images" --read-only-port="$port" --hostname-override=bench $(host_flags) \
    >"$work/picolet.log" 2>&1 &
pid=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
# Wait until the image import (at start) is done.
for _ in $(seq 300); do grep -q "imported" "$work/picolet.log" && break; sleep 0.1; done
sleep 2 # let start-up allocations settle before the idle reading
read -r idle_rss idle_pss < <(mem "$pid")
reaper=$(cat "$work/root/reaper.pid")
read -r reaper_rss reaper_pss < <(mem "$reaper")

: >"$work/picolet.ns"
for i in $(seq "$n"); do
    cat >"$work/pod.yaml" <<POD
apiVersion: v1
kind: Pod
metadata: {name: p$i}
spec:
  containers: [{name: c, image: busybox, command: [sh, -c, "echo up; exec sleep 100000"]}]
POD
    t0=$(date +%s%N)
    mv "$work/pod.yaml" "$work/manifests/p$i.yaml"
    log=
    for _ in $(seq 3000); do
        log=$(compgen -G "$work/logs/default_p$i-bench_*/c/0.log" || true)
        [[ -n $log && -s $log ]] && break
        sleep 0.005
    done
    [[ -s $log ]] || { cat "$work/picolet.log"; echo "pod p$i did not start" >&2; exit 1; }
    t1=$(date -d "$(head -1 "$log" | cut -d' ' -f1)" +%s%N)
    echo $((t1 - t0)) >>"$work/picolet.ns"
done
sleep 2
read -r busy_rss busy_pss < <(mem "$pid")
read -r reaper_busy_rss reaper_busy_pss < <(mem "$reaper")
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
c0=$(cpu_ticks "$pid"); s0=$(date +%s%N); l0=$(stat -c %s "$work/picolet.log")
sleep 30
c1=$(cpu_ticks "$pid"); s1=$(date +%s%N); l1=$(stat -c %s "$work/picolet.log")
log_per_hour=$(( (l1 - l0) * 120 ))
idle_cpu=$(awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v ns=$((s1 - s0)) 'BEGIN { printf "%.2f", 100 * t / hz / (ns / 1e9) }')

# Bare runc on the same image: unpack the OCI archive and time `runc run -d`.
mkdir -p "$work/oci" "$work/bare"
tar -xf "$work/images/busybox.tar" -C "$work/oci"
umoci unpack --image "$work/oci:$(umoci ls --layout "$work/oci" | head -1)" "$work/bare" >/dev/null
sed -i 's/"terminal": true/"terminal": false/' "$work/bare/config.json"
jq '.process.args = ["sleep", "100000"]' "$work/bare/config.json" >"$work/bare/c.json" && mv "$work/bare/c.json" "$work/bare/config.json"
: >"$work/runc.ns"
for i in $(seq "$n"); do
    t0=$(date +%s%N)
    runc --root "$work/bare-runc" run -d --bundle "$work/bare" "bare$i" </dev/null >/dev/null 2>&1
    t1=$(date +%s%N)
    echo $((t1 - t0)) >>"$work/runc.ns"
done

size=$(stat -c %s "$bin")
read -r p50 p99 < <(percentiles "$work/picolet.ns")
read -r r50 r99 < <(percentiles "$work/runc.ns")
cat <<TABLE
| figure ($(uname -m), $(nproc) cores, runc $(runc --version | awk 'NR==1 {print $3}')) | value |
|---|---|
| stripped binary | $((size / 1024)) KiB |
| picolet RSS / PSS, idle (image imported, 0 pods) | ${idle_rss} / ${idle_pss} KiB |
| picolet RSS / PSS, $n pods | ${busy_rss} / ${busy_pss} KiB |
| reaper RSS / PSS, idle / $n pods | ${reaper_rss} / ${reaper_pss} KiB, ${reaper_busy_rss} / ${reaper_busy_pss} KiB |
| picolet CPU, $n pods, 30 s idle | ${idle_cpu} % of a core |
| picolet log written at steady state (default level), per hour | ${log_per_hour} bytes |
| manifest → container running, p50 / p99 over $n pods | $p50 / $p99 ms |
| bare \`runc run -d\`, p50 / p99 over $n | $r50 / $r99 ms |
TABLE
