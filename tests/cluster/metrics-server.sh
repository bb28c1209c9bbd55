#!/usr/bin/env bash
# metrics-server for the cluster up.sh started in DIR, so that `kubectl top`
# works: a host process on 127.0.0.1, registered as the aggregated API
# v1beta1.metrics.k8s.io.
#
#   metrics-server.sh DIR start   build it if needed (build.sh metrics-server),
#                                 start it on a free port, register it; returns
#                                 once the APIService is Available (at once
#                                 when it already runs)
#   metrics-server.sh DIR stop    unregister and stop it (idempotent)
#
# The APIService points at an ExternalName Service (externalName: localhost)
# in kube-system: without --enable-aggregator-routing the apiserver resolves
# such a Service to localhost:<port>, so everything stays on loopback.
# metrics-server runs with the admin kubeconfig (for the API and to check
# the front proxy's and clients' credentials) and scrapes each kubelet's
# /metrics/resource at its InternalIP and the port in the Node's status,
# authenticating with the admin client certificate and not verifying the
# kubelet's serving certificate; --metric-resolution 10s (its minimum;
# the kubelet request timeout must be shorter: 5s), so
# `kubectl top` has numbers about 20 s (two scrapes) after a node appears.
#
# Its pid is in DIR/pids, so down.sh (and up.sh's --owner-pid watcher) stop
# it with the cluster. Log: DIR/logs/metrics-server.log.
#
# Env: PICOLET_METRICS_SERVER_BIN (directory holding metrics-server; default:
# what `build.sh metrics-server` prints), PICOLET_CLUSTER_TIMEOUT (seconds to
# wait for it, default 180).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "metrics-server.sh: $*" >&2; exit 1; }
(($# == 2)) || die "usage: metrics-server.sh DIR start|stop"
[[ -f $1/env ]] || die "$1/env missing: not a cluster started by up.sh"
dir=$(cd "$1" && pwd)
# shellcheck disable=SC1091
source "$dir/env"
pidfile=$dir/pids/metrics-server.pid
k() { "$KUBECTL" --kubeconfig "$ADMIN_KUBECONFIG" --request-timeout 10s "$@"; }

# The pid in the pid file if that process is still ours (its command line
# names DIR; a pid may have been reused).
ours() {
    local p a
    [[ -f $pidfile ]] || return 1
    read -r p <"$pidfile" || return 1
    [[ $p =~ ^[0-9]+$ ]] || return 1
    while IFS= read -r -d '' a; do
        [[ $a == *"$dir/"* ]] && { echo "$p"; return 0; }
    done 2>/dev/null <"/proc/$p/cmdline"
    return 1
}

stop() {
    k delete apiservice v1beta1.metrics.k8s.io --ignore-not-found >/dev/null 2>&1 || true
    k -n kube-system delete service metrics-server --ignore-not-found >/dev/null 2>&1 || true
    local p
    p=$(ours) || return 0
    kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 100); do
        [[ -e /proc/$p ]] || return 0
        sleep 0.1
    done
    kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
}

case $2 in
stop) stop; exit 0 ;;
start) ;;
*) die "unknown action $2 (start or stop)" ;;
esac

if p=$(ours); then
    echo "metrics-server.sh: already running in $dir (pid $p)" >&2
    exit 0
fi
if [[ -n ${PICOLET_METRICS_SERVER_BIN:-} ]]; then
    bin=$PICOLET_METRICS_SERVER_BIN
else
    bin=$("$here/build.sh" metrics-server | tail -1) || die "build.sh metrics-server failed"
fi
[[ -x $bin/metrics-server ]] || die "$bin/metrics-server missing"

# A free port outside the ephemeral range, under up.sh's port lock until it
# listens (as up.sh picks its ports).
lockfile=${TMPDIR:-/tmp}/picolet-cluster-ports.lock
exec 9>>"$lockfile" || die "cannot open $lockfile"
flock -w 300 9 || die "timed out waiting for $lockfile"
read -r eph_lo eph_hi </proc/sys/net/ipv4/ip_local_port_range || { eph_lo=32768; eph_hi=60999; }
if ((eph_lo > 12000)); then lo=10000 hi=$((eph_lo - 1)); else lo=$((eph_hi + 1)) hi=65000; fi
# Local ports in use (any state; hex), from /proc/net/tcp{,6}.
used=" $(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk 'NR > 1 { split($2, a, ":"); printf "%s ", a[2] }')"
port=""
for _ in $(seq 1000); do
    p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
    printf -v hex '%04X' "$p"
    [[ $used == *" $hex "* ]] || { port=$p; break; }
done
[[ -n $port ]] || die "no free port in $lo-$hi"
printf -v port_hex '%04X' "$port"
listening() { cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v h="$port_hex" 'NR > 1 && $4 == "0A" { split($2, a, ":"); if (a[2] == h) f = 1 } END { exit !f }'; }

mkdir -p "$dir/run/metrics-server"
setsid "$bin/metrics-server" \
    --kubeconfig "$ADMIN_KUBECONFIG" \
    --authentication-kubeconfig "$ADMIN_KUBECONFIG" \
    --authorization-kubeconfig "$ADMIN_KUBECONFIG" \
    --bind-address 127.0.0.1 --secure-port "$port" --cert-dir "$dir/run/metrics-server" \
    --kubelet-insecure-tls --kubelet-preferred-address-types InternalIP --kubelet-use-node-status-port \
    --metric-resolution 10s --kubelet-request-timeout 5s \
    </dev/null >"$dir/logs/metrics-server.log" 2>&1 9>&- &
echo $! >"$pidfile"

timeout=${PICOLET_CLUSTER_TIMEOUT:-180}
deadline=$((SECONDS + timeout))
fail() {
    echo "metrics-server.sh: $*; the end of $dir/logs/metrics-server.log:" >&2
    tail -n 25 "$dir/logs/metrics-server.log" >&2
    stop
    exit 1
}
trap 'fail interrupted' HUP INT TERM
alive() { [[ -e /proc/$1 ]] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
wait_for() { # WHAT COMMAND...
    local what=$1
    shift
    until "$@" >/dev/null 2>&1; do
        alive "$(cat "$pidfile")" || fail "metrics-server exited"
        ((SECONDS < deadline)) || fail "timed out after ${timeout}s waiting for $what"
        sleep 0.2
    done
}
wait_for "metrics-server to listen on 127.0.0.1:$port" listening
flock -u 9
exec 9>&-

k apply -f - >/dev/null <<EOF || fail "registering the APIService"
apiVersion: v1
kind: Service
metadata:
  name: metrics-server
  namespace: kube-system
  labels: {k8s-app: metrics-server}
spec:
  type: ExternalName
  externalName: localhost
  ports: [{name: https, port: $port, protocol: TCP}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1beta1.metrics.k8s.io
  labels: {k8s-app: metrics-server}
spec:
  service: {name: metrics-server, namespace: kube-system, port: $port}
  group: metrics.k8s.io
  version: v1beta1
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 100
  versionPriority: 100
EOF
available() {
    [[ $(k get apiservice v1beta1.metrics.k8s.io \
        -o jsonpath='{.status.conditions[?(@.type=="Available")].status}') == True ]]
}
wait_for "the APIService v1beta1.metrics.k8s.io to be Available" available
echo "metrics-server.sh: metrics-server on 127.0.0.1:$port, v1beta1.metrics.k8s.io Available, ${SECONDS}s" >&2
