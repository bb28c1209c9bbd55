#!/usr/bin/env bash
# Stop or start the kube-apiserver of the cluster up.sh started in DIR, and
# nothing else (etcd, controllers and kubelets keep running): how the
# offline tests take the API server away and bring it back.
#
#   apiserver.sh DIR stop     SIGTERM (SIGKILL after 10 s); remembers its command line
#   apiserver.sh DIR start    the same command line again; returns once /readyz is ok
set -euo pipefail

(($# == 2)) || { echo "usage: apiserver.sh DIR stop|start" >&2; exit 1; }
dir=$(cd "$1" && pwd)
pidfile=$dir/pids/kube-apiserver.pid
saved=$dir/pids/kube-apiserver.cmdline
die() { echo "apiserver.sh: $*" >&2; exit 1; }

case $2 in
stop)
    read -r pid <"$pidfile" || die "no pid in $pidfile"
    [[ -r /proc/$pid/cmdline ]] || die "kube-apiserver (pid $pid) is not running"
    cp "/proc/$pid/cmdline" "$saved.tmp" && mv -f "$saved.tmp" "$saved"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        [[ -e /proc/$pid ]] || exit 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    while [[ -e /proc/$pid ]]; do sleep 0.1; done
    ;;
start)
    [[ -f $saved ]] || die "no saved command line: stop it with apiserver.sh first"
    mapfile -d '' -t cmd <"$saved"
    setsid "${cmd[@]}" >>"$dir/logs/kube-apiserver.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    source "$dir/env"
    for _ in $(seq 1800); do
        if "$KUBECTL" --kubeconfig "$ADMIN_KUBECONFIG" get --raw /readyz >/dev/null 2>&1; then exit 0; fi
        [[ -e /proc/$! ]] || die "kube-apiserver exited; see $dir/logs/kube-apiserver.log"
        sleep 0.1
    done
    die "kube-apiserver not ready after 180 s"
    ;;
*) die "unknown action $2 (stop or start)" ;;
esac
