#!/usr/bin/env bash
# Upstream's e2e specs against picolet as the only node of a real control plane.
#
#   tests/conformance/run.sh [OPTIONS] [FOCUS [SKIP]]
#
# FOCUS/SKIP: ginkgo regexes; default the node conformance set,
#   focus '\[NodeConformance\]', skip
#   '\[Serial\]|\[Disruptive\]|\[Flaky\]|\[Slow\]|\[Feature:|\[Alpha\]|\[Beta\]'.
# --ci             the CI subset: the specs listed in ci-focus.txt (one regex a line)
# --conformance    the [Conformance] specs of sig-node and sig-storage that need
#                  only a node and are not [NodeConformance] (issue #15 point 8)
# --report DIR     where junit.xml, report.json, summary.txt and logs/ go
#                  (default: /tmp/picolet-conformance-<date>; printed at the end)
# --procs N        ginkgo processes (default 4)
# --keep           leave the work directory (picolet's root dir, cluster data) behind
#
# What it does: builds (or finds cached) the control plane, e2e.test, ginkgo,
# kube-proxy, CoreDNS, the test images and picolet (cargo build --release);
# serves the images from a local docker-registry that picolet reaches through
# registries.yaml mirrors for registry.k8s.io and docker.io; starts the control
# plane, CoreDNS and kube-proxy (nftables mode, its own table) on the host, and
# picolet joined as the only node on a bridge of its own (pconf0, 10.244.0.0/24);
# runs the specs in parallel; writes the report; tears everything down, also on
# failure or interrupt. Exit status 1 when a spec failed.
#
# Root only. One run at a time per machine (the bridge, its subnet and
# kube-proxy's table are the host's): a second waits for the first.
#
# Env: PICOLET_CLUSTER_CACHE (build caches), CARGO_TARGET_DIR, PICOLET_BIN (a
# picolet binary instead of cargo build), GO.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../lib.sh
source "$repo/tests/lib.sh"
die() { echo "run.sh: $*" >&2; exit 1; }
say() { echo "run.sh: $(date +%T) $*" >&2; }

default_focus='\[NodeConformance\]'
default_skip='\[Serial\]|\[Disruptive\]|\[Flaky\]|\[Slow\]|\[Feature:|\[Alpha\]|\[Beta\]'
focus="" skip="" mode=default report="" procs=4 keep=0 pos=()
while (($#)); do
    case $1 in
        --ci) mode=ci; shift ;;
        --conformance) mode=conformance; shift ;;
        --report) (($# >= 2)) || die "--report needs a directory"; report=$2; shift 2 ;;
        --report=*) report=${1#*=}; shift ;;
        --procs) (($# >= 2)) || die "--procs needs a number"; procs=$2; shift 2 ;;
        --procs=*) procs=${1#*=}; shift ;;
        --keep) keep=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (--help)" ;;
        *) pos+=("$1"); shift ;;
    esac
done
((${#pos[@]} <= 2)) || die "at most FOCUS and SKIP"
case $mode in
ci)
    ((${#pos[@]} == 0)) || die "--ci takes no FOCUS"
    focus=$(grep -v -e '^#' -e '^\s*$' "$here/ci-focus.txt" | paste -sd'|')
    skip=$default_skip ;;
conformance)
    ((${#pos[@]} == 0)) || die "--conformance takes no FOCUS"
    # sig-node and sig-storage [Conformance] specs of the groups that need only a
    # node, without those already in the node conformance set.
    focus='\[sig-(node|storage)\] (ConfigMap|Secrets|Projected|Downward API|EmptyDir|HostPath|Pods|Containers|Probing container|Container Lifecycle Hook|Sysctls|Security Context|Kubelet|Variable Expansion|PreStop|Subpath).*\[Conformance\]'
    skip="\\[NodeConformance\\]|$default_skip" ;;
default)
    focus=${pos[0]:-$default_focus}
    skip=${pos[1]:-$default_skip} ;;
esac
[[ $procs =~ ^[1-9][0-9]*$ ]] || die "--procs $procs: a positive number"
need_root

# What this host's kernel cannot do, found out in a throwaway network
# namespace; each such spec is skipped with the reason (README, "Skipped specs").
host_skips=()
if ! unshare -n ip link add probe0 type dummy 2>/dev/null; then
    # PrivilegedPod runs `ip link add dummy1 type dummy` in a privileged pod.
    host_skips+=('PrivilegedPod \[NodeConformance\] should enable privileged commands')
    echo "run.sh: this kernel has no dummy network devices: skipping PrivilegedPod" >&2
fi
# Specs whose check the stand-in busybox image cannot meet (README, "Skipped
# specs"): they print the environment with `sh -c env` and look for variables
# whose names are not shell identifiers (data-1=value-1), which Debian's ash
# drops and upstream's busybox image keeps.
host_skips+=('\[sig-node\] (Secrets|ConfigMap) should be consumable via the environment'
    'should be consumable as environment variable names (variable names )?with various prefixes')
for s in "${host_skips[@]}"; do skip="$skip|$s"; done

# --- Tools -----------------------------------------------------------------
install_go
for t in nft:nftables ip:iproute2 docker-registry:docker-registry skopeo:skopeo umoci:umoci gcc:gcc \
    /bin/bash-static:bash-static /bin/busybox:busybox-static; do
    command -v "${t%%:*}" >/dev/null && continue
    say "installing ${t#*:}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${t#*:}" >/dev/null
done
[[ -f /usr/lib/x86_64-linux-gnu/libc.a || -n $(find /usr/lib -name libc.a -print -quit 2>/dev/null) ]] ||
    apt-get install -y -qq --no-install-recommends libc6-dev >/dev/null
[[ -x /usr/lib/cni/bridge || -x /opt/cni/bin/bridge ]] || {
    say "installing containernetworking-plugins"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends containernetworking-plugins >/dev/null
}
cni_bin=/usr/lib/cni
[[ -x $cni_bin/bridge ]] || cni_bin=/opt/cni/bin

t0=$SECONDS
say "building (cached after the first time)"
cluster_bin=$(bash "$repo/tests/cluster/build.sh" | tail -1)
e2e_bin=$(bash "$repo/tests/cluster/build.sh" e2e | tail -1)
coredns_bin=$(bash "$repo/tests/cluster/build.sh" coredns | tail -1)
images=$(bash "$here/images.sh" "$e2e_bin" | tail -1)
if [[ -n ${PICOLET_BIN:-} ]]; then
    picolet=$PICOLET_BIN
else
    (cd "$repo" && cargo build --release -q) || die "cargo build --release failed"
    picolet=${CARGO_TARGET_DIR:-$repo/target}/release/picolet
fi
[[ -x $picolet ]] || die "no picolet binary at $picolet"
build_s=$((SECONDS - t0))
say "built in ${build_s}s"

# --- One run per machine ------------------------------------------------------
mkdir -p /run/lock
# Held on fd 8, which no process started below inherits (8>&-): leftovers of
# a run killed with SIGKILL must not keep holding it.
exec 8>/run/lock/picolet-conformance.lock
if ! flock -n 8; then
    say "another conformance run holds /run/lock/picolet-conformance.lock, waiting"
    # Polled: a blocking flock child would outlive a killed run.sh and take the lock.
    until flock -n 8; do sleep 2; done
fi

# A run killed with SIGKILL (no teardown) left its helpers running: they are
# listed in the state file with the work dir their command lines name.
state=/run/lock/picolet-conformance.state
if [[ -s $state ]]; then
    read -r old_work <"$state"
    say "stopping what a killed run left ($old_work)"
    while read -r p; do
        [[ $p =~ ^[0-9]+$ ]] || continue
        # Each was started in a session of its own: its group goes too (ginkgo's
        # e2e.test processes).
        tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -qF "$old_work" && kill -KILL -- "-$p" "$p" 2>/dev/null || true
    done < <(tail -n +2 "$state")
    nft delete table ip kube-proxy 2>/dev/null || true
    nft delete table ip6 kube-proxy 2>/dev/null || true
    if [[ $old_work == /tmp/picolet-conformance-work.* ]]; then
        cleanup_root "$old_work/root" || true
        if [[ -d $old_work/cluster/pids ]]; then
            bash "$repo/tests/cluster/down.sh" --drop-data "$old_work/cluster" >/dev/null 2>&1 || true
        fi
        rm -rf "$old_work"
    fi
fi
: >"$state"

node=picolet-e2e
bridge=pconf0
subnet=10.244.0.0/24
node_ip=10.244.0.1
dns_ip=10.96.0.10
work=$(mktemp -d /tmp/picolet-conformance-work.XXXXXX)
echo "$work" >"$state"
[[ -n $report ]] || report=/tmp/picolet-conformance-$(date +%Y%m%d-%H%M%S)
mkdir -p "$report/logs"
report=$(cd "$report" && pwd)
rm -f "$report"/{junit.xml,report.json,summary.txt}
cluster=$work/cluster
pids=()             # background processes of ours, stopped in reverse order
ip_forward_was=$(cat /proc/sys/net/ipv4/ip_forward)
made_bridge=0 ginkgo_pid="" picolet_pid="" proxy_up=0

remember() { echo "$1" >>"$state"; }
stop_pid() { # stop_pid PID: TERM, then KILL after 10 s
    local p=$1 i
    kill -TERM "$p" 2>/dev/null || return 0
    for i in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
}

teardown() {
    local rc=$?
    trap '' INT TERM HUP
    set +e
    say "tearing down"
    if [[ -n $ginkgo_pid ]] && kill -0 "$ginkgo_pid" 2>/dev/null; then
        # ginkgo passes an interrupt on to its processes and runs their clean-ups.
        kill -INT -- "-$ginkgo_pid" 2>/dev/null
        for _ in $(seq 300); do kill -0 "$ginkgo_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$ginkgo_pid" 2>/dev/null
    fi
    # Pods first, while the API server is up, so picolet stops them (and
    # tears their networks down through CNI) as it would in production.
    if [[ -n $picolet_pid ]] && kill -0 "$picolet_pid" 2>/dev/null && [[ -f $cluster/admin.kubeconfig ]]; then
        "$cluster_bin/kubectl" --kubeconfig "$cluster/admin.kubeconfig" delete pods -A --all --wait=false \
            --grace-period=1 >/dev/null 2>&1
        for _ in $(seq 60); do
            [[ -z $(ls "$work/root/runc" 2>/dev/null) ]] && break
            [[ -z $(runc --root "$work/root/runc" list -q 2>/dev/null) ]] && break
            sleep 1
        done
    fi
    [[ -n $picolet_pid ]] && stop_pid "$picolet_pid"
    cleanup_root "$work/root"
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[i]}"; done
    if ((proxy_up)); then
        nft delete table ip kube-proxy 2>/dev/null
        nft delete table ip6 kube-proxy 2>/dev/null
    fi
    [[ -d $cluster/pids ]] && bash "$repo/tests/cluster/down.sh" --drop-data "$cluster" >/dev/null 2>&1
    # Network namespaces picolet may have left (it names them after pods) go with
    # the root dir; the bridge is ours.
    ((made_bridge)) && ip link del "$bridge" 2>/dev/null
    echo "$ip_forward_was" >/proc/sys/net/ipv4/ip_forward
    # Logs into the report.
    cp -f "$work"/*.log "$report/logs/" 2>/dev/null
    [[ -d $cluster/logs ]] && cp -rf "$cluster/logs" "$report/logs/cluster" 2>/dev/null
    if ((keep)); then
        say "work directory kept: $work"
    else
        rm -rf "$work"
    fi
    : >"$state"
    say "report in $report"
    exit "$rc"
}
trap teardown EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- Registry -------------------------------------------------------------------
reg_port=$(free_port)
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $images
  maintenance:
    uploadpurging:
      enabled: false
    readonly:
      enabled: true
http:
  addr: 127.0.0.1:$reg_port
EOF
setsid docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 </dev/null 8>&- &
pids+=($!)
remember $!
cat >"$work/registries.yaml" <<EOF
mirrors:
  registry.k8s.io:
    endpoint: ["http://127.0.0.1:$reg_port"]
  docker.io:
    endpoint: ["http://127.0.0.1:$reg_port"]
EOF

# --- Control plane ----------------------------------------------------------------
say "starting the control plane"
PICOLET_CLUSTER_BIN=$cluster_bin bash "$repo/tests/cluster/up.sh" "$cluster" --owner-pid $$ >/dev/null 8>&-
admin=$cluster/admin.kubeconfig
kubectl() { "$cluster_bin/kubectl" --kubeconfig "$admin" "$@"; }
# shellcheck disable=SC1091
source "$cluster/env"

# --- The node's bridge, CNI config --------------------------------------------------
# Made here (the CNI bridge plugin adopts it) so CoreDNS and the kubelet server can
# listen on its address before the first pod.
if ip link show "$bridge" >/dev/null 2>&1; then
    ip link del "$bridge" # a leftover of a killed run (we hold the lock)
fi
ip link add "$bridge" type bridge
made_bridge=1
ip addr add "$node_ip/24" dev "$bridge"
ip link set "$bridge" up
mkdir -p "$work/cni" "$work/cni-ipam"
cat >"$work/cni/10-conformance.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "conformance",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$work/cni-ipam",
        "ranges": [[{"subnet": "$subnet", "gateway": "$node_ip"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF

# --- Cluster DNS: CoreDNS on the bridge address, Service kube-system/kube-dns ------
dns_port=53
cat >"$work/Corefile" <<EOF
.:$dns_port {
    bind $node_ip
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $admin
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
}
EOF
setsid "$coredns_bin/coredns" -conf "$work/Corefile" >"$work/coredns.log" 2>&1 </dev/null 8>&- &
pids+=($!)
remember $!
kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  clusterIP: $dns_ip
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: $dns_port}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: $dns_port}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-host
  namespace: kube-system
  labels:
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: picolet-conformance
addressType: IPv4
endpoints:
- addresses: ["$node_ip"]
  conditions: {ready: true}
ports:
- {name: dns, port: $dns_port, protocol: UDP}
- {name: dns-tcp, port: $dns_port, protocol: TCP}
EOF

# --- kube-proxy (nftables: everything in its own table ip/ip6 kube-proxy) ------------
proxy_flags=(--proxy-mode=nftables --kubeconfig="$admin" --hostname-override="$node"
    --cluster-cidr=10.244.0.0/16 --nodeport-addresses="$node_ip/32"
    --bind-address="$node_ip" --healthz-bind-address="127.0.0.1:$(free_port)"
    --metrics-bind-address="127.0.0.1:$(free_port)"
    --conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0)
# Replies of a pod behind a Service to a pod on the same bridge only meet
# conntrack when bridged traffic passes netfilter; else masquerade it all.
[[ $(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null) == 1 ]] || proxy_flags+=(--masquerade-all)
proxy_up=1
setsid "$e2e_bin/kube-proxy" "${proxy_flags[@]}" >"$work/kube-proxy.log" 2>&1 </dev/null 8>&- &
pids+=($!)
remember $!

# --- picolet ------------------------------------------------------------------------
bash "$repo/tests/cluster/node-kubeconfig.sh" "$cluster" "$node" "$work/node.kubeconfig" >/dev/null
mkdir -p "$work"/{root,manifests,pod-logs,import}
# shellcheck disable=SC2046
setsid "$picolet" \
    --kubeconfig="$work/node.kubeconfig" --hostname-override="$node" \
    --node-ip="$node_ip" --address="$node_ip" --port=10250 \
    --client-ca-file="$cluster/pki/ca.crt" --healthz-port=0 --read-only-port=0 \
    --root-dir="$work/root" --pod-manifest-path="$work/manifests" --pod-logs-dir="$work/pod-logs" \
    --image-import-dir="$work/import" --registry-config="$work/registries.yaml" \
    --cni-conf-dir="$work/cni" --cni-bin-dir="$cni_bin" \
    --cluster-dns="$dns_ip" --cluster-domain=cluster.local \
    --eviction-hard= --image-gc-high-threshold=100 \
    $(host_flags) -v=2 >"$work/picolet.log" 2>&1 </dev/null 8>&- &
picolet_pid=$!
remember "$picolet_pid"
say "waiting for node $node to be Ready"
for i in $(seq 120); do
    kill -0 "$picolet_pid" 2>/dev/null || { tail -20 "$work/picolet.log" >&2; die "picolet exited"; }
    kubectl wait node "$node" --for=condition=Ready --timeout=1s >/dev/null 2>&1 && break
    ((i < 120)) || { tail -20 "$work/picolet.log" >&2; die "node $node not Ready after 120 s"; }
    sleep 1
done
# The node lifecycle controller drops the not-ready taint a moment later.
for _ in $(seq 60); do
    [[ -z $(kubectl get node "$node" -o jsonpath='{.spec.taints}') ]] && break
    sleep 1
done
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || die "a helper exited early; see the logs in $report/logs"; done

# --- The specs ------------------------------------------------------------------------
say "running: focus '$focus' skip '$skip' with $procs processes"
t1=$SECONDS
set +e
(
    cd "$report"
    # Its own process group (setsid does not fork here: a background
    # subshell is no group leader), so the teardown reaches the e2e.test
    # processes too.
    exec setsid "$e2e_bin/ginkgo" -p --procs="$procs" --timeout=4h --no-color --silence-skips --poll-progress-after=5m \
        --focus="$focus" --skip="$skip" \
        --junit-report=junit.xml --json-report=report.json --output-dir="$report" \
        "$e2e_bin/e2e.test" -- \
        --provider=skeleton --kubeconfig="$admin" --kubectl-path="$cluster_bin/kubectl" \
        --node-os-distro=debian --report-dir="$report/e2e" --num-nodes=1 \
        --allowed-not-ready-nodes=0
) >"$report/ginkgo.log" 2>&1 8>&- &
ginkgo_pid=$!
remember "$ginkgo_pid"
wait "$ginkgo_pid"
ginkgo_rc=$?
ginkgo_pid=""
set -e
run_s=$((SECONDS - t1))
say "specs done in ${run_s}s (ginkgo exit $ginkgo_rc)"

# --- Summary ------------------------------------------------------------------------------
[[ -f $report/report.json ]] || { tail -30 "$report/ginkgo.log" >&2; die "ginkgo wrote no report"; }
summary=$(python3 "$here/summary.py" "$report/report.json" --build-seconds "$build_s" --run-seconds "$run_s" \
    --focus "$focus" --skip "$skip")
echo "$summary" >"$report/summary.txt"
echo "$summary"
if ((ginkgo_rc != 0)); then
    exit 1
fi
