#!/bin/bash
# picolet as a node of a real cluster (tests/cluster/: etcd, kube-apiserver,
# controller-manager, scheduler on 127.0.0.1): Node Ready latency, pod bound
# → container running, and memory, threads, fds, CPU and API requests with
# PODS cluster pods. Prints markdown tables on stdout; progress on stderr.
# Everything it starts (cluster, picolets, reapers, containers, mounts) is
# stopped and removed on exit.
#
#   sudo tests/bench/cluster.sh
#   PODS=30 N=20 STARTS=3 IDLE=30 WINDOW=60 sudo -E tests/bench/cluster.sh
#
#   STARTS  picolet starts for the Node Ready latency (default 3)
#   N       pods per series for bound → running (default 20); two series,
#           interleaved: with the default kube-api-access volume, and with
#           automountServiceAccountToken: false
#   GAP     seconds between two timed pods (default 0.3)
#   PODS    pods for the memory and request figures (default 30)
#   IDLE    idle seconds with PODS pods before reading memory (default 30)
#   WINDOW  seconds over which CPU and API requests are counted (default 60)
#   MEM_ENV extra environment of the picolet measured for memory (e.g.
#           MALLOC_ARENA_MAX=1)
#   FOLLOW  concurrent `kubectl logs -f` equivalents for the server load
#           figures (default 200; GET .../pods/<p>/log?follow=true through
#           the API server with curl, which is what kubectl sends)
#   EXECS   concurrent `kubectl exec -i ... cat` sessions (default 50)
#   LOADED  pods timed bound → running while those streams are open (default 10)
#   KEEP=1  keep the work directory (logs) instead of removing it
#
# Timing: t0 is taken just before picolet's start (Node Ready: Node polled
# every 50 ms) or just before a pod's POST (curl with admin credentials); a
# pod is bound when its create request ends in the API server's audit log.
# The end is the first poll of /pods (every 10 ms plus a curl) that shows the
# container running, so figures carry up to one poll interval of detection
# delay (reported). The audit log: after up.sh the API server is restarted
# once (tests/cluster/apiserver.sh stop/start, with two flags added to the
# command line it saves) with a policy that logs the requests of group
# system:nodes (picolet's) and this script's pod creations.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
source tests/lib.sh
REPO=$PWD
FOLLOW=${FOLLOW:-200} EXECS=${EXECS:-50} LOADED=${LOADED:-10} STARTS=${STARTS:-3} N=${N:-20} GAP=${GAP:-0.3} PODS=${PODS:-30} IDLE=${IDLE:-30} WINDOW=${WINDOW:-60}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
say() { echo "cluster-bench: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (picolet mounts overlayfs and runs runc)"
for c in runc curl jq openssl; do command -v $c >/dev/null || die "$c not found (sudo tests/run.sh installs what is needed)"; done

BASE='' CDIR='' SLEEP_PID='' PIDS=() ROOTS=() LOAD_PIDS=()
cleanup() {
    [ -n "$BASE" ] || return 0
    local p r
    for p in "${LOAD_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    [ -z "$SLEEP_PID" ] || kill "$SLEEP_PID" 2>/dev/null
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    for r in "${ROOTS[@]}"; do cleanup_root "$r"; done
    [ -n "$CDIR" ] && [ -d "$CDIR" ] && bash tests/cluster/down.sh "$CDIR" >&2
    # Anything still mounted under BASE (deepest first; octal escapes decoded).
    awk -v b="$BASE" 'index($5, b "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
        umount -l "$(printf '%b' "$m")" 2>/dev/null
    done
    if [ "${KEEP:-0}" = 1 ]; then
        say "kept $BASE"
    elif grep -q " $BASE/" /proc/self/mountinfo; then
        say "mounts left under $BASE: not removed"
    else
        rm -rf "$BASE"
    fi
    BASE=
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Long waits in the background, so a signal's trap runs at once.
pause() { sleep "$1" & SLEEP_PID=$!; wait "$SLEEP_PID"; SLEEP_PID=''; }

say "release build"
cargo build --release --locked -q || die "cargo build failed"
BINARY=$CARGO_TARGET_DIR/release/picolet
IMAGES=$CARGO_TARGET_DIR/test-images
bash tests/images/build.sh "$IMAGES" >&2 || die "tests/images/build.sh failed"

BASE=$(mktemp -d /tmp/picolet-bench-cluster.XXXXXX)
CDIR=$BASE/cluster
mkdir -p "$BASE/import"
cp "$IMAGES/busybox.tar" "$BASE/import/"
say "control plane binaries (tests/cluster/build.sh: cached after the first build)"
install_go >&2 || die "no Go for tests/cluster/build.sh"
CLUSTER_BIN=$(bash tests/cluster/build.sh | tail -1) && [ -x "$CLUSTER_BIN/kube-apiserver" ] || die "tests/cluster/build.sh failed"
say "starting the test cluster"
PICOLET_CLUSTER_BIN=$CLUSTER_BIN bash tests/cluster/up.sh "$CDIR" --owner-pid $$ >/dev/null || die "tests/cluster/up.sh failed"
# shellcheck disable=SC1091
source "$CDIR/env"
say "restarting kube-apiserver with an audit log of the nodes' requests"
cat >"$BASE/audit-policy.yaml" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  userGroups: ["system:nodes"]
- level: Metadata
  users: ["kubernetes-admin"]
  verbs: ["create"]
  resources: [{group: "", resources: ["pods"]}]
- level: None
POLICY
bash tests/cluster/apiserver.sh "$CDIR" stop || die "apiserver.sh stop failed"
printf '%s\0' --audit-policy-file="$BASE/audit-policy.yaml" --audit-log-path="$BASE/audit.log" >>"$CDIR/pids/kube-apiserver.cmdline"
bash tests/cluster/apiserver.sh "$CDIR" start || die "apiserver.sh start failed"
PKI=$CDIR/pki
api() { curl -sS --max-time 10 --cacert "$CA_CERT" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$@"; }

now_ns() { local t=$EPOCHREALTIME; echo "${t//[.,]/}000"; } # no fork; any locale
ms() { awk -v ns="$1" 'BEGIN { printf "%.0f", ns / 1e6 }'; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# "p50 p90 max mean" in ms of a file of ns values (nearest rank).
stats() {
    sort -n "$1" | awk '{ v[NR] = $1; s += $1 } END {
        i50 = int(NR * 0.5 + 0.999999); i90 = int(NR * 0.9 + 0.999999);
        printf "%.0f %.0f %.0f %.1f\n", v[i50] / 1e6, v[i90] / 1e6, v[NR] / 1e6, s / NR / 1e6 }'
}
median_ms() { sort -n "$1" | awk '{ v[NR] = $1 } END { printf "%.0f", v[int((NR + 1) / 2)] / 1e6 }'; }
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }
pss_kib() { awk '$1 == "Pss:" { print $2 }' "/proc/$1/smaps_rollup" 2>/dev/null; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

# start_picolet NAME [ENV=VALUE...]: a picolet with a fresh root for node
# NAME; sets PID, PORT, DIR. t0 is taken just before the exec.
start_picolet() {
    local name=$1; shift
    DIR=$BASE/$name
    mkdir -p "$DIR/root" "$DIR/logs"
    ROOTS+=("$DIR/root")
    bash tests/cluster/node-kubeconfig.sh "$CDIR" "$name" "$DIR/node.kubeconfig" >/dev/null || die "node-kubeconfig.sh failed"
    PORT=$(free_port) SERVER_PORT=$(free_port)
    T_START=$(now_ns)
    # shellcheck disable=SC2046 # host_flags: several flags, or none
    env "$@" "$BINARY" --kubeconfig "$DIR/node.kubeconfig" --hostname-override "$name" --root-dir "$DIR/root" \
        --pod-logs-dir "$DIR/logs" --image-import-dir "$BASE/import" --read-only-port "$PORT" \
        --node-ip 127.0.0.1 --address 127.0.0.1 --port "$SERVER_PORT" --healthz-port 0 --client-ca-file "$CDIR/pki/ca.crt" $(host_flags) >"$DIR/picolet.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
}
stop_picolet() { # PID ROOT: picolet, its containers and reaper
    kill -KILL "$1" 2>/dev/null && wait "$1" 2>/dev/null
    cleanup_root "$2"
}
node_ready() { # NAME: 0 when the Node's Ready condition is True
    api "$APISERVER_URL/api/v1/nodes/$1" 2>/dev/null |
        jq -e 'any(.status.conditions[]?; .type == "Ready" and .status == "True")' >/dev/null 2>&1
}
wait_for() { # SECONDS WHAT COMMAND...
    local deadline=$((SECONDS + $1)) what=$2; shift 2
    until "$@"; do
        kill -0 "$PID" 2>/dev/null || { tail -5 "$DIR/picolet.log" >&2; die "picolet exited while waiting for $what"; }
        [ $SECONDS -lt $deadline ] || { tail -5 "$DIR/picolet.log" >&2; die "timed out waiting for $what"; }
        sleep 0.1
    done
}
imported() { grep -q "imported" "$DIR/picolet.log"; }

pod_json() { # NAME NODE AUTOMOUNT(true|false)
    jq -cn --arg n "$1" --arg node "$2" --argjson am "$3" '{
        apiVersion: "v1", kind: "Pod",
        metadata: {name: $n, namespace: "default", labels: {bench: "cluster"}},
        spec: {nodeName: $node, automountServiceAccountToken: $am, terminationGracePeriodSeconds: 1,
               containers: [{name: "c", image: "busybox", command: ["sleep", "100000"]}]}}'
}
create_pod() { # NAME NODE AUTOMOUNT: POSTs; 1 on a refusal
    local out
    out=$(pod_json "$@" | api -X POST -H 'Content-Type: application/json' --data-binary @- \
        "$APISERVER_URL/api/v1/namespaces/default/pods" -o /dev/null -w '%{http_code}') || return 1
    [ "$out" = 201 ] || { say "POST pod $1: HTTP $out"; return 1; }
}

# ---- 1. Node Ready latency ---------------------------------------------------
: >"$BASE/ready.ns"; : >"$BASE/registered.ns"; : >"$BASE/node.polls"
for i in $(seq 1 "$STARTS"); do
    say "start $i/$STARTS: picolet start → Node Ready"
    registered='' prev=''
    start_picolet "ready-$i"
    deadline=$((SECONDS + 60))
    while :; do
        code=$(api -o "$BASE/node.json" -w '%{http_code}' "$APISERVER_URL/api/v1/nodes/ready-$i" 2>/dev/null)
        t=$(now_ns)
        [ -z "$prev" ] || echo $((t - prev)) >>"$BASE/node.polls"
        prev=$t
        if [ "$code" = 200 ]; then
            [ -n "$registered" ] || { registered=1; echo $((t - T_START)) >>"$BASE/registered.ns"; }
            if jq -e 'any(.status.conditions[]?; .type == "Ready" and .status == "True")' "$BASE/node.json" >/dev/null 2>&1; then
                echo $((t - T_START)) >>"$BASE/ready.ns"
                break
            fi
        fi
        kill -0 "$PID" 2>/dev/null || { tail -5 "$DIR/picolet.log" >&2; die "picolet exited before its Node was Ready"; }
        [ $SECONDS -lt $deadline ] || die "node ready-$i not Ready after 60 s"
        sleep 0.05
    done
    stop_picolet "$PID" "$DIR/root"
done

# ---- 2. bound → container running ---------------------------------------------
say "bound → running: $N pods with and $N without the kube-api-access volume, interleaved"
start_picolet bind
wait_for 60 "node bind Ready" node_ready bind
wait_for 60 "the busybox import" imported
sleep 2 # the fetcher's first pass and the first status writes
: >"$BASE/polls"
# How many containers /pods shows running: a test without jq, so a poll costs
# one curl; jq only confirms when the count went up.
running_count() { local t=${1//\"running\":/}; echo $(((${#1} - ${#t}) / 10)); }
RUNNING=$(running_count "$(curl -s --max-time 1 "http://127.0.0.1:$PORT/pods")")
# wait_running NAME: D = ns from T0 until /pods shows the pod's container
# running (stamped when the answer arrived). Poll intervals go to polls.
wait_running() {
    local body t prev='' deadline=$((SECONDS + 30))
    while :; do
        body=$(curl -s --max-time 1 "http://127.0.0.1:$PORT/pods")
        t=$(now_ns)
        [ -z "$prev" ] || echo $((t - prev)) >>"$BASE/polls"
        prev=$t
        if [ "$(running_count "$body")" -gt "$RUNNING" ] &&
            jq -e --arg n "$1" 'any(.items[]; .metadata.name == $n and any(.status.containerStatuses[]?; .state.running != null))' \
                <<<"$body" >/dev/null 2>&1; then
            RUNNING=$((RUNNING + 1))
            D=$((t - T0))
            return 0
        fi
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.01
    done
}
: >"$BASE/token.ns"; : >"$BASE/notoken.ns"; : >"$BASE/post.ns"; : >"$BASE/timed"
utc_micro() { date -u +%Y-%m-%dT%H:%M:%S.%6NZ; }
BIND_FROM=$(utc_micro); BIND_S=$SECONDS
for i in $(seq 1 "$N"); do
    for kind in token notoken; do
        name=$kind-$i
        am=true; [ $kind = notoken ] && am=false
        T0=$(now_ns)
        create_pod "$name" bind $am || die "creating pod $name failed"
        echo $(($(now_ns) - T0)) >>"$BASE/post.ns"
        wait_running "$name" || { tail -20 "$DIR/picolet.log" >&2; die "pod $name not running after 30 s"; }
        echo "$D" >>"$BASE/$kind.ns"
        # name, series, t0 in µs of the UTC day (as the logs' times), ns to seen
        echo "$name $kind $(((T0 / 1000) % 86400000000)) $D" >>"$BASE/timed"
        sleep "$GAP"
    done
done
# Mean time between two polls of /pods.
POLL_MS=$(awk '{ s += $1 } END { printf "%.0f", NR ? s / NR / 1e6 : 0 }' "$BASE/polls")
BIND_TO=$(utc_micro); BIND_S=$((SECONDS - BIND_S))
BIND_LOG=$DIR/picolet.log
# When each pod was bound: the end of its create in the audit log (µs of day).
# us_of_day FIELD: that field's RFC 3339 UTC time as µs of its day, in its place.
us_of_day() { awk -v f="$1" '{ split(substr($f, 12, 15), t, ":"); $f = sprintf("%.0f", (t[1] * 3600 + t[2] * 60 + t[3]) * 1e6); print }'; }
jq -r 'select(.user.username == "kubernetes-admin" and .verb == "create" and .stage == "ResponseComplete")
    | "\(.objectRef.name) \(.stageTimestamp)"' "$BASE/audit.log" | us_of_day 2 >"$BASE/bound"
# Where the time goes, with picolet's own log lines (ms resolution): bound →
# "pod ... added" (watch, loop wake-up), added → "started container"
# (volumes, bundle, runc create + start), started → seen on /pods.
: >"$BASE/split"; : >"$BASE/token.bound"; : >"$BASE/notoken.bound"
day=86400000000
while read -r name kind t0 d; do
    seen=$((t0 + d / 1000))
    bound=$(awk -v n="$name" '$1 == n { print $2 }' "$BASE/bound")
    a=$(grep -m1 " pod default/$name added$" "$BIND_LOG" | us_of_day 1 | cut -d' ' -f1)
    b=$(grep -m1 " started container c of pod default/$name " "$BIND_LOG" | us_of_day 1 | cut -d' ' -f1)
    [ -n "$bound" ] && [ -n "$a" ] && [ -n "$b" ] || { say "$name: no audit or log times"; continue; }
    # Times of day: anything before t0 is past midnight (UTC).
    [ "$bound" -lt "$t0" ] && bound=$((bound + day))
    [ "$a" -lt "$t0" ] && a=$((a + day))
    [ "$b" -lt "$t0" ] && b=$((b + day))
    echo "$(((seen - bound) * 1000))" >>"$BASE/$kind.bound"
    echo "$kind $((bound - t0)) $((a - bound)) $((b - a)) $((seen - b))" >>"$BASE/split"
done <"$BASE/timed"
split_row() { # series label: medians in ms
    local col out=""
    for col in 2 3 4 5; do
        out+=" $(awk -v k="$1" -v c="$col" '$1 == k { print $c }' "$BASE/split" | sort -n |
            awk '{ v[NR] = $1 } END { if (NR) { m = v[int((NR + 1) / 2)] / 1e3; printf "%.0f", (m > -0.5 && m < 0.5) ? 0 : m } else printf "?" }') |"
    done
    echo "| $2 |$out"
}
stop_picolet "$PID" "$DIR/root"

# ---- 3. memory, threads, fds, CPU and API requests with PODS pods -----------
say "memory: picolet idle with 0 cluster pods"
start_picolet mem ${MEM_ENV:-}
wait_for 60 "node mem Ready" node_ready mem
wait_for 60 "the busybox import" imported
pause 5
REAPER=$(cat "$DIR/root/reaper.pid")
read_proc() { # label → row of the memory table
    echo "| $1 | $(mib "$(status_kib "$PID" VmRSS)") | $(mib "$(pss_kib "$PID")") | $(status_kib "$PID" Threads) | $(ls "/proc/$PID/fd" | wc -l) | $(mib "$(status_kib "$REAPER" VmRSS)") | $(mib "$(pss_kib "$REAPER")") |"
}
MEM_ROWS=("$(read_proc "0 cluster pods (Node Ready, image imported, 5 s idle)")")
say "memory: creating $PODS pods bound to node mem"
for i in $(seq 1 "$PODS"); do create_pod "idle-$i" mem true || die "creating pod idle-$i failed"; done
T0=$(now_ns)
all_running() {
    [ "$(curl -s --max-time 2 "http://127.0.0.1:$PORT/pods" | jq '[.items[] | select(.status.phase == "Running")] | length' 2>/dev/null)" = "$PODS" ]
}
wait_for 180 "$PODS pods Running" all_running
ALL_RUNNING_MS=$(ms $(($(now_ns) - T0)))
say "memory: $PODS pods Running after ${ALL_RUNNING_MS} ms; ${IDLE} s idle"
pause "$IDLE"
MEM_ROWS+=("$(read_proc "$PODS pods Running, then $IDLE s idle")")
say "API requests and CPU over ${WINDOW} s idle with $PODS pods"
w0=$(utc_micro); c0=$(cpu_ticks "$PID")
pause "$WINDOW"
w1=$(utc_micro); c1=$(cpu_ticks "$PID")
CPU=$(awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v w="$WINDOW" 'BEGIN { printf "%.2f", 100 * t / hz / w }')
sleep 1 # requests received in the window and answered just after it
# Node mem's requests received in the window (one audit line per stage: a
# watch has ResponseStarted and ResponseComplete), by verb and resource.
jq -r --arg u system:node:mem --arg a "$w0" --arg b "$w1" '
    select(.user.username == $u and .requestReceivedTimestamp >= $a and .requestReceivedTimestamp < $b)
    | [.auditID, .verb, (.objectRef.resource // .requestURI) + (if .objectRef.subresource then "/" + .objectRef.subresource else "" end)
       + (if .objectRef.name then " (" + .objectRef.name + ")" else "" end)] | @tsv' "$BASE/audit.log" |
    sort -u -k1,1 | cut -f2- | sed -E 's/ \((idle-[0-9]+|mem)\)$/ (<own>)/' >"$BASE/window.requests"
REQUESTS=$(wc -l <"$BASE/window.requests")
BREAKDOWN=$(sort "$BASE/window.requests" | uniq -c | sort -rn | awk '{ n = $1; $1 = ""; printf "| %s |%s |\n", n, $0 }')
MEM_LOG=$DIR/picolet.log

# ---- 4. the kubelet server under load -----------------------------------------
# FOLLOW log followers and EXECS exec sessions through the API server, a
# client that stops reading, and LOADED pods started meanwhile (the pod loop
# must not stall); then everything closed: threads and fds must come back.
KUBECTL=("$CLUSTER_BIN/kubectl" --kubeconfig "$CDIR/admin.kubeconfig")
threads() { status_kib "$PID" Threads; }
# Open fds except connections to the API server (the client keeps idle ones
# for reuse, more after a busy minute of access reviews).
fds() {
    local api_port_hex inodes
    api_port_hex=$(printf '%04X' "$APISERVER_PORT")
    inodes=$(awk -v p=":$api_port_hex" 'NR > 1 && substr($3, length($3) - 4) == p { print "socket:[" $10 "]" }' "/proc/$PID/net/tcp")
    find "/proc/$PID/fd" -mindepth 1 -printf '%l\n' 2>/dev/null | grep -vxF -e "${inodes:-none}" | wc -l
}
load_row() { echo "| $1 | $(mib "$(status_kib "$PID" VmRSS)") | $(mib "$(pss_kib "$PID")") | $(threads) | $(fds) |"; }
say "server load: a chatty pod, $FOLLOW followers of its log, $EXECS exec sessions"
jq -cn '{apiVersion: "v1", kind: "Pod", metadata: {name: "chatty", namespace: "default"},
    spec: {nodeName: "mem", terminationGracePeriodSeconds: 1, containers: [{name: "c", image: "busybox",
    command: ["sh", "-c", "i=0; while :; do i=$((i+1)); echo line $i of a chatty container; sleep 0.1; done"]}]}}' |
    api -X POST -H 'Content-Type: application/json' --data-binary @- "$APISERVER_URL/api/v1/namespaces/default/pods" -o /dev/null
chatty_running() { curl -s --max-time 2 "http://127.0.0.1:$PORT/pods" | jq -e 'any(.items[]; .metadata.name == "chatty" and .status.phase == "Running")' >/dev/null 2>&1; }
wait_for 60 "pod chatty Running" chatty_running
RUNNING=$(running_count "$(curl -s --max-time 1 "http://127.0.0.1:$PORT/pods")")
T_BASE=$(threads) F_BASE=$(fds)
LOAD_ROWS=("$(load_row "before: $PODS + 1 pods, no streams")")
for i in $(seq 1 "$FOLLOW"); do
    # No --max-time (api() has one): a follower stays until killed.
    curl -sSN --cacert "$CA_CERT" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
        "$APISERVER_URL/api/v1/namespaces/default/pods/chatty/log?follow=true" >/dev/null 2>&1 &
    LOAD_PIDS+=($!)
done
mkfifo "$BASE/stdin"
sleep 100000 >"$BASE/stdin" & LOAD_PIDS+=($!)
for i in $(seq 1 "$EXECS"); do
    "${KUBECTL[@]}" exec -i "idle-$(( (i - 1) % PODS + 1 ))" -- cat <"$BASE/stdin" >/dev/null 2>&1 &
    LOAD_PIDS+=($!)
done
streams_open() { [ "$(threads)" -ge $((T_BASE + FOLLOW + EXECS)) ]; }
wait_for 120 "$FOLLOW followers and $EXECS exec sessions connected" streams_open
LOAD_ROWS+=("$(load_row "$FOLLOW log followers + $EXECS exec sessions open")")
say "server load: $LOADED pods bound → running with the streams open"
: >"$BASE/loaded.ns"
for i in $(seq 1 "$LOADED"); do
    T0=$(now_ns)
    create_pod "loaded-$i" mem false || die "creating pod loaded-$i failed"
    wait_running "loaded-$i" || die "pod loaded-$i not running after 30 s"
    echo "$D" >>"$BASE/loaded.ns"
    sleep "$GAP"
done
# A client that asks for the chatty log and then reads nothing.
say "server load: a follower that stops reading, 30 s"
python3 - "$SERVER_PORT" "$CDIR/pki/admin.crt" "$CDIR/pki/admin.key" <<'PY' & LOAD_PIDS+=($!)
import socket, ssl, sys, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.sendall(b"GET /containerLogs/default/chatty/c?follow=true HTTP/1.1\r\nHost: x\r\n\r\n")
time.sleep(100000)
PY
pause 5
STALL0=$(status_kib "$PID" VmRSS)
pause 30
STALL1=$(status_kib "$PID" VmRSS)
for p in "${LOAD_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
LOAD_PIDS=()
# The pods started under load add log files and pipes of their own.
for i in $(seq 1 "$LOADED"); do
    api -X DELETE "$APISERVER_URL/api/v1/namespaces/default/pods/loaded-$i?gracePeriodSeconds=0" -o /dev/null
done
loaded_gone() { ! curl -s --max-time 2 "http://127.0.0.1:$PORT/pods" | grep -q '"name":"loaded-'; }
wait_for 60 "the loaded pods gone" loaded_gone
closed() { [ "$(threads)" -le "$T_BASE" ] && [ "$(fds)" -le "$F_BASE" ]; }
T_CLOSE=$SECONDS
wait_for 60 "threads and fds back to $T_BASE / $F_BASE" closed
T_CLOSE=$((SECONDS - T_CLOSE))
LOAD_ROWS+=("$(load_row "all streams closed (back within $T_CLOSE s)")")

# Events the timed pods got (sent by picolet's API writer long before now).
EVENT_ROWS=$(api "$APISERVER_URL/api/v1/namespaces/default/events" | jq -r '.items[]
    | select(.source.host == "bind" and (.involvedObject.name | test("^(no)?token-[0-9]+$")))
    | [(.involvedObject.name | sub("-[0-9]+$"; "")), .reason, (.count // 1)] | @tsv' |
    awk -F'\t' '{ n[$1 " " $2] += $3 } END { for (k in n) print k, n[k] }' |
    sort | awk '{ printf "| %s | %s | %s |\n", ($1 == "token" ? "kube-api-access" : "no token"), $2, $3 }')
WARNINGS=$(grep -c ' WARN picolet::pod' "$BIND_LOG")
# Node bind's API requests while the timed pods started.
BIND_REQUESTS=$(jq -r --arg u system:node:bind --arg a "$BIND_FROM" --arg b "$BIND_TO" '
    select(.user.username == $u and .requestReceivedTimestamp >= $a and .requestReceivedTimestamp < $b)
    | [.auditID, .verb, (.objectRef.resource // .requestURI) + (if .objectRef.subresource then "/" + .objectRef.subresource else "" end)] | @tsv' "$BASE/audit.log" |
    sort -u -k1,1 | cut -f2- | sort | uniq -c | sort -rn |
    awk -v n=$((2 * N)) '{ printf "| %s %s | %d | %.2f |\n", $2, $3, $1, $1 / n }')

# ---- tables ---------------------------------------------------------------------
read -r tk50 tk90 tkmax _ < <(stats "$BASE/token.ns")
read -r nt50 nt90 ntmax _ < <(stats "$BASE/notoken.ns")
read -r bt50 bt90 btmax btmean < <(stats "$BASE/token.bound")
read -r bn50 bn90 bnmax bnmean < <(stats "$BASE/notoken.bound")
read -r po50 _ pomax _ < <(stats "$BASE/post.ns")
echo "### picolet in a cluster ($(uname -m), $(nproc) CPUs, Kubernetes $K8S_VERSION control plane on the same host, runc $(runc --version | awk 'NR==1 {print $3}'))"
echo
echo "| figure | value |"
echo "|---|---|"
echo "| picolet start → Node registered, median of $STARTS (each: $(tr '\n' ' ' <"$BASE/registered.ns" | awk '{ for (i = 1; i <= NF; i++) printf "%s%.0f", (i > 1 ? " / " : ""), $i / 1e6 }') ms) | $(median_ms "$BASE/registered.ns") ms |"
echo "| picolet start → Node Ready, median of $STARTS (each: $(tr '\n' ' ' <"$BASE/ready.ns" | awk '{ for (i = 1; i <= NF; i++) printf "%s%.0f", (i > 1 ? " / " : ""), $i / 1e6 }') ms) | $(median_ms "$BASE/ready.ns") ms |"
echo "| pod bound → container running on /pods, kube-api-access volume (default), p50 / p90 / max over $N | $bt50 / $bt90 / $btmax ms (mean $btmean) |"
echo "| the same with automountServiceAccountToken: false | $bn50 / $bn90 / $bnmax ms (mean $bnmean) |"
echo "| pod POST sent → container running, kube-api-access / no token, p50 / p90 / max | $tk50 / $tk90 / $tkmax ms, $nt50 / $nt90 / $ntmax ms |"
echo "| the POST alone (curl: process, new TLS connection, admission, etcd), p50 / max | $po50 / $pomax ms |"
echo "| $PODS pods POSTed back to back → all Running on /pods | $ALL_RUNNING_MS ms |"
echo "| picolet CPU, $PODS pods, ${WINDOW} s idle | $CPU % of a core |"
echo "| API requests by picolet in ${WINDOW} s idle with $PODS pods (audit log) | $REQUESTS |"
echo
echo "\"Bound\" is the end of the pod's create request in the API server's audit log (the pod is stored with spec.nodeName set). The Node was polled every $(awk '{ s += $1 } END { printf "%.0f", NR ? s / NR / 1e6 : 0 }' "$BASE/node.polls") ms on average (curl with a new TLS connection + 50 ms), /pods every ${POLL_MS} ms (curl + 10 ms): the figures include up to one such interval of detection delay."
echo
echo "| picolet memory ($(uname -m) glibc build) | picolet RSS MiB | picolet PSS MiB | threads | open fds | reaper RSS MiB | reaper PSS MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${MEM_ROWS[@]}"
echo
echo "| requests in ${WINDOW} s | verb and resource (name) |"
echo "|---:|---|"
echo "$BREAKDOWN"
echo
echo "| series, medians in ms | POST sent → bound (curl, API server) | bound → pod added (watch, picolet's loop) | added → container started (volumes, runc create + start) | started → seen on /pods (publish, poll) |"
echo "|---|---:|---:|---:|---:|"
split_row token "kube-api-access volume"
split_row notoken "automountServiceAccountToken: false"
echo
echo "API requests of the node while the $((2 * N)) timed pods started (${BIND_S} s, audit log):"
echo
echo "| verb and resource | requests | per pod |"
echo "|---|---:|---:|"
echo "$BIND_REQUESTS"
echo
echo "Events picolet recorded on the $((2 * N)) timed pods ($WARNINGS warnings in its log meanwhile):"
echo
echo "| pods | reason | count |"
echo "|---|---|---:|"
echo "$EVENT_ROWS"
echo
echo "Kubelet server under load (node mem: $PODS idle pods + one logging 10 lines/s; followers: \`GET .../pods/chatty/log?follow=true\` through the API server, as \`kubectl logs -f\`; exec: \`kubectl exec -i <pod> -- cat\`):"
echo
echo "| picolet | RSS MiB | PSS MiB | threads | open fds |"
echo "|---|---:|---:|---:|---:|"
printf '%s\n' "${LOAD_ROWS[@]}"
echo
read -r lo50 lo90 lomax lomean < <(stats "$BASE/loaded.ns")
echo "| with the streams open | value |"
echo "|---|---|"
echo "| pod POST sent → container running (no token), p50 / p90 / max over $LOADED | $lo50 / $lo90 / $lomax ms (mean $lomean); idle: $nt50 / $nt90 / $ntmax ms |"
echo "| RSS of picolet while one follower reads nothing for 30 s | $(mib "$STALL0") → $(mib "$STALL1") MiB |"
if [ "${KEEP:-0}" = 1 ]; then
    say "logs: $BIND_LOG $MEM_LOG"
fi
