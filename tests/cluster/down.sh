#!/usr/bin/env bash
# Stop the cluster up.sh started in DIR: SIGTERM to each component's process
# group, SIGKILL after a deadline. Safe to run again, or on a cluster whose
# up.sh failed halfway. DIR (logs, data) stays, except that --drop-data
# (what up.sh's --owner-pid watcher uses) deletes the etcd data, 64 MB of
# preallocated WAL that a throwaway cluster leaves behind.
#
#   down.sh [--drop-data] DIR
#
# Env: PICOLET_CLUSTER_STOP_TIMEOUT (seconds before SIGKILL, default 10).
set -euo pipefail

drop_data=""
if [[ ${1:-} == --drop-data ]]; then drop_data=1; shift; fi
(($# == 1)) || { echo "usage: down.sh [--drop-data] DIR" >&2; exit 1; }
[[ -d $1 ]] || { echo "down.sh: $1: no such directory" >&2; exit 1; }
dir=$(cd "$1" && pwd)
[[ -d $dir/pids ]] || exit 0
grace=${PICOLET_CLUSTER_STOP_TIMEOUT:-10}

# Reading /proc/PID/* of a process that may exit meanwhile: never with
# $(<file), which under set -e ends bash 5.2 when the file is gone, even
# behind ||.
# readf VAR FILE: FILE into VAR, 1 when unreadable or empty.
readf() {
    local -n _readf_v=$1
    _readf_v=""
    { IFS= read -r -d '' _readf_v; } 2>/dev/null <"$2" || true
    [[ -n $_readf_v ]]
}
# 0 when an argument of process $1 is DIR or a path in it.
mentions() {
    local a
    while IFS= read -r -d '' a; do
        [[ $a == "$dir" || $a == *"$dir/"* ]] && return 0
    done 2>/dev/null <"/proc/$1/cmdline"
    return 1
}
# The pid in DIR/pids/NAME.pid if that process is still ours: its command
# line mentions DIR (a pid may have been reused since).
ours() {
    local f=$dir/pids/$1.pid p
    [[ -f $f ]] || return 1
    read -r p <"$f" || true
    [[ $p =~ ^[0-9]+$ && $p != "$$" && -r /proc/$p/cmdline ]] || return 1
    mentions "$p" || return 1
    echo "$p"
}
# Exists and is not a zombie (one read: the process may go away meanwhile).
running() {
    local st
    readf st "/proc/$1/status" || return 1
    [[ $st != *$'\nState:\tZ'* ]]
}
# The process group when the process leads one (up.sh starts each with setsid).
signal() {
    local sig=$1 p=$2 stat pgrp
    readf stat "/proc/$p/stat" || return 0
    stat=${stat##*) }
    read -r _ _ pgrp _ <<<"$stat"
    if [[ $pgrp == "$p" ]]; then kill -s "$sig" -- "-$p" 2>/dev/null || true
    else kill -s "$sig" "$p" 2>/dev/null || true; fi
}
# stop NAME...: TERM them all, wait up to the grace period, KILL what is left.
stop() {
    local n p pids=() deadline
    for n in "$@"; do
        p=$(ours "$n") && pids+=("$p")
    done
    ((${#pids[@]})) || return 0
    for p in "${pids[@]}"; do signal TERM "$p"; done
    deadline=$((SECONDS + grace))
    for p in "${pids[@]}"; do
        while running "$p" && ((SECONDS < deadline)); do sleep 0.1; done
        if running "$p"; then
            echo "down.sh: pid $p did not stop within ${grace}s, killing it" >&2
            signal KILL "$p"
        fi
    done
    for p in "${pids[@]}"; do
        deadline=$((SECONDS + 5))
        while running "$p" && ((SECONDS < deadline)); do sleep 0.1; done
        running "$p" && echo "down.sh: pid $p is still there after SIGKILL" >&2
    done
    return 0
}

stop watcher
stop metrics-server kube-scheduler kube-controller-manager kube-apiserver
stop etcd
[[ -z $drop_data ]] || rm -rf "$dir/etcd"
