#!/bin/bash
# picolet's footprint: stripped release size per target, and (natively, as
# root with runc) idle memory and CPU of picolet and its reaper with 0, 10 and
# 30 busybox pods. Prints markdown tables on stdout; progress goes to stderr.
#
#   tests/bench/footprint.sh [IDLE_SECONDS]        (default 60)
#   PODS="0 10" TARGETS="x86_64-unknown-linux-gnu" SIZES=0 tests/bench/footprint.sh 10
#
#   IDLE_SECONDS  CPU is measured as utime+stime over this idle window
#   PODS          pod counts to measure (default "0 10 30"); empty: sizes only
#   TARGETS       size table targets (cross settings in .cargo/config.toml;
#                 tests/cross/run.sh installs the toolchains)
#   SIZES=0       skip the size table
#   QEMU=1        also start the aarch64 musl build under qemu-user with 0 pods
#                 (best effort: see the note printed)
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/lib.sh
CGROUP_FLAGS=$(host_flags)
REPO=$PWD
IDLE=${1:-${IDLE:-60}}
PODS=${PODS-"0 10 30"}
TARGETS=${TARGETS:-"x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
say() { echo "footprint: $*" >&2; }

kib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

# ---- sizes -----------------------------------------------------------------
if [ "${SIZES:-1}" != 0 ]; then
    rows=()
    for t in $TARGETS; do
        say "release build for $t"
        if cargo build --release --locked --target "$t" -q 2>/dev/null; then
            b=$CARGO_TARGET_DIR/$t/release/picolet
            # The release profile strips; strip again in case a profile override did not.
            cp "$b" "$CARGO_TARGET_DIR/footprint-$t" && strip_tool=strip
            case $t in
                aarch64-*) strip_tool=aarch64-linux-gnu-strip ;;
                armv7-*) strip_tool=arm-linux-gnueabihf-strip ;;
            esac
            $strip_tool "$CARGO_TARGET_DIR/footprint-$t" 2>/dev/null || true
            n=$(stat -c %s "$CARGO_TARGET_DIR/footprint-$t")
            rows+=("| $t | $n | $(awk -v n="$n" 'BEGIN { printf "%.2f", n / 1048576 }') | $(file -b "$b" | grep -q 'statically linked\|static-pie' && echo static || echo dynamic) |")
        else
            rows+=("| $t | build failed | | |")
        fi
    done
    echo "### Stripped release binary"
    echo
    echo "| target | bytes | MiB | linking |"
    echo "|---|---:|---:|---|"
    printf '%s\n' "${rows[@]}"
    echo
fi

[ -n "$PODS" ] || [ "${QEMU:-0}" = 1 ] || exit 0

# ---- idle memory and CPU (native) -------------------------------------------
if [ "$(id -u)" != 0 ] || ! command -v runc >/dev/null; then
    say "idle measurements need root and runc: skipped"
    exit 0
fi
say "native release build"
HOST=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --locked --target "$HOST" -q 2>/dev/null || { say "native build failed"; exit 1; }
BIN=$CARGO_TARGET_DIR/$HOST/release/picolet
IMAGES=$CARGO_TARGET_DIR/test-images
bash tests/images/build.sh "$IMAGES" >&2 || { say "tests/images/build.sh failed"; exit 1; }
TCK=$(getconf CLK_TCK)

BASE= PICOLET_PID=
cleanup() {
    [ -n "$BASE" ] || return 0
    local root=$BASE/root
    [ -n "$PICOLET_PID" ] && kill -KILL "$PICOLET_PID" 2>/dev/null && wait "$PICOLET_PID" 2>/dev/null
    PICOLET_PID=
    if [ -d "$root/runc" ]; then
        for c in $(runc --root "$root/runc" list -q 2>/dev/null); do
            runc --root "$root/runc" delete -f "$c" >/dev/null 2>&1
        done
    fi
    [ -f "$root/reaper.pid" ] && kill -KILL "$(cat "$root/reaper.pid")" 2>/dev/null
    # Deepest first; mountinfo field 5 is the mount point (octal escapes kept as is).
    awk -v b="$BASE" '$5 == b || index($5, b "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
        umount -l "$(printf '%b' "$m")" 2>/dev/null
    done
    rm -rf "$BASE"
    BASE=
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }
pss_kib() { awk '$1 == "Pss:" { print $2 }' "/proc/$1/smaps_rollup" 2>/dev/null; }
# utime + stime in clock ticks: fields 14 and 15, counted after the ")" that ends comm.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

manifest() {
    cat <<M
apiVersion: v1
kind: Pod
metadata:
  name: idle-$1
spec:
  containers:
  - name: sleep
    image: busybox
    command: [sleep, "100000"]
M
}

measure() { # N BIN [RUNNER...]
    local n=$1 bin=$2; shift 2
    BASE=$(mktemp -d /tmp/picolet-footprint.XXXXXX)
    local root=$BASE/root port
    port=$(free_port)
    mkdir -p "$root" "$BASE/manifests" "$BASE/logs" "$BASE/import"
    cp "$IMAGES/busybox.tar" "$BASE/import/"
    for i in $(seq 1 "$n"); do manifest "$i" > "$BASE/manifests/idle-$i.yaml"; done
    if [ $# -gt 0 ]; then
        # Under qemu-user picolet cannot spawn its reaper (the host kernel has no
        # binfmt_misc entry to run an ARM binary it execs), so start the reaper
        # through the emulator first; picolet connects to a running one.
        setsid "$@" "$bin" reaper --root-dir "$root" > /dev/null 2>> "$BASE/reaper.log" < /dev/null &
        local w=$((SECONDS + 30))
        until [ -S "$root/reaper.sock" ] || [ $SECONDS -ge $w ]; do sleep 0.2; done
    fi
    "$@" "$bin" --root-dir "$root" --pod-manifest-path "$BASE/manifests" --pod-logs-dir "$BASE/logs" \
        --image-import-dir "$BASE/import" --read-only-port "$port" --hostname-override footprint \
        $CGROUP_FLAGS > "$BASE/picolet.log" 2>&1 &
    PICOLET_PID=$!
    local deadline=$((SECONDS + 120 + 3 * n)) running=-1
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "$PICOLET_PID" 2>/dev/null || { say "picolet exited:"; tail -5 "$BASE/picolet.log" >&2; return 1; }
        running=$(curl -sf "http://127.0.0.1:$port/pods" | jq '[.items[] | select(.status.phase == "Running")] | length' 2>/dev/null)
        [ "${running:--1}" -ge "$n" ] 2>/dev/null && break
        sleep 0.5
    done
    [ "${running:--1}" -ge "$n" ] 2>/dev/null || { say "$n pods: only ${running:-?} Running before the deadline"; return 1; }
    sleep 3 # let the last starts, log pumps and status updates settle
    local rpid
    rpid=$(cat "$root/reaper.pid" 2>/dev/null)
    local p0 r0 p1 r1
    p0=$(cpu_ticks "$PICOLET_PID"); r0=$(cpu_ticks "$rpid")
    sleep "$IDLE"
    p1=$(cpu_ticks "$PICOLET_PID"); r1=$(cpu_ticks "$rpid")
    local cpu_p cpu_r
    cpu_p=$(awk -v a="$p0" -v b="$p1" -v t="$TCK" -v w="$IDLE" 'BEGIN { printf "%.2f%% (%d ticks)", (b - a) / t / w * 100, b - a }')
    cpu_r=$(awk -v a="$r0" -v b="$r1" -v t="$TCK" -v w="$IDLE" 'BEGIN { printf "%.2f%% (%d ticks)", (b - a) / t / w * 100, b - a }')
    ROWS+=("| $LABEL | $n | $(kib "$(status_kib "$PICOLET_PID" VmRSS)") | $(kib "$(pss_kib "$PICOLET_PID")") | $cpu_p | $(kib "$(status_kib "$rpid" VmRSS)") | $(kib "$(pss_kib "$rpid")") | $cpu_r |")
    cleanup
}

ROWS=()
LABEL="$HOST (native)"
for n in $PODS; do
    say "$n pods: starting, then ${IDLE}s idle"
    measure "$n" "$BIN" || ROWS+=("| $LABEL | $n | failed: see stderr | | | | | |")
    cleanup
done

QEMU_NOTE=
if [ "${QEMU:-0}" = 1 ]; then
    LABEL="aarch64 musl (qemu-user)"
    say "0 pods under qemu-aarch64-static"
    cargo build --release --locked --target aarch64-unknown-linux-musl -q 2>/dev/null
    if measure 0 "$CARGO_TARGET_DIR/aarch64-unknown-linux-musl/release/picolet" qemu-aarch64-static; then
        QEMU_NOTE="qemu-user rows: 0 pods only (runc and the busybox image are x86_64 here); the reaper was started through qemu first because picolet cannot exec its ARM self without binfmt_misc; RSS/PSS/CPU include the emulator's own memory and translation, so they bound a board's figures from above."
    else
        ROWS+=("| $LABEL | 0 | not measurable: see note | | | | | |")
        QEMU_NOTE="picolet did not start under qemu-user (see stderr): qemu-user 7.2 (bookworm) rejects prctl(PR_SET_CHILD_SUBREAPER) with EINVAL, which the reaper needs, and the host cannot exec an ARM binary without binfmt_misc. Measure ARM memory on a board or in the tests/vm VM."
    fi
    cleanup
fi

echo "### Idle picolet and reaper ($IDLE s CPU window; $(nproc) CPUs, $(uname -r))"
echo
echo "| build | pods | picolet RSS | picolet PSS | picolet CPU | reaper RSS | reaper PSS | reaper CPU |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
[ -z "$QEMU_NOTE" ] || { echo; echo "$QEMU_NOTE"; }
