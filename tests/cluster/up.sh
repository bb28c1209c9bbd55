#!/usr/bin/env bash
# Start a Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler) on 127.0.0.1, on free ports, with
# its certificates, data and logs in DIR:
#
#   up.sh DIR [--owner-pid PID] [--token-node NAME]...
#
# DIR/admin.kubeconfig   cluster-admin (O=system:masters)
# DIR/env                shell-sourceable: APISERVER_URL, ports, BIN, pids, ...
# DIR/logs/              one log per component
# DIR/pki/               CA, certificates, service-account keys, tokens.csv
#
# Returns once /readyz is ok and the default ServiceAccount and the
# kube-root-ca.crt ConfigMap exist in the default namespace.
# --owner-pid PID: a watcher stops the cluster when PID exits.
# --token-node NAME: a static bearer token for user system:node:NAME (group
#   system:nodes) in DIR/pki/tokens.csv; repeatable, default: token-node.
#   node-kubeconfig.sh --token writes a kubeconfig with it.
#
# Env: PICOLET_CLUSTER_BIN (directory with the binaries; default: what
# build.sh prints, building first if needed), PICOLET_CLUSTER_TIMEOUT
# (seconds to wait for readiness, default 180). Stop with down.sh DIR.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "up.sh: $*" >&2; exit 1; }
usage() { die "usage: up.sh DIR [--owner-pid PID] [--token-node NAME]..."; }

dir="" owner="" token_nodes=()
while (($#)); do
    case $1 in
        --owner-pid) (($# >= 2)) || usage; owner=$2; shift 2 ;;
        --owner-pid=*) owner=${1#*=}; shift ;;
        --token-node) (($# >= 2)) || usage; token_nodes+=("$2"); shift 2 ;;
        --token-node=*) token_nodes+=("${1#*=}"); shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) usage ;;
        *) [[ -z $dir ]] || usage; dir=$1; shift ;;
    esac
done
[[ -n $dir ]] || usage
((${#token_nodes[@]})) || token_nodes=(token-node)
if [[ -n $owner ]]; then
    [[ $owner =~ ^[0-9]+$ && -e /proc/$owner ]] || die "--owner-pid $owner: no such process"
fi
for n in "${token_nodes[@]}"; do
    [[ $n =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$ ]] || die "--token-node $n: not a valid node name"
done
for c in curl setsid flock base64; do command -v $c >/dev/null || die "$c not found"; done
# shellcheck source=pki.sh
source "$here/pki.sh"
# shellcheck source=versions.env
source "$here/versions.env"

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
# Refuse to clobber anything but a stopped cluster of ours.
if [[ -n $(ls -A "$dir") ]]; then
    [[ -f $dir/.picolet-cluster ]] || die "$dir is not empty and holds no picolet test cluster"
    for f in "$dir"/pids/*.pid; do
        [[ -f $f ]] || continue
        read -r p <"$f" || continue
        if [[ -r /proc/$p/cmdline ]] && tr '\0' '\n' <"/proc/$p/cmdline" | grep -qF "$dir/"; then
            die "a cluster is already running in $dir (pid $p); stop it with down.sh $dir"
        fi
    done
    rm -rf "${dir:?}"/{etcd,pki,logs,pids,run,env,*.kubeconfig,*.kubeconfig.*,*.crt,*.key}
fi
touch "$dir/.picolet-cluster"
mkdir -p "$dir"/{pki,logs,pids,run}

if [[ -n ${PICOLET_CLUSTER_BIN:-} ]]; then
    bin=$PICOLET_CLUSTER_BIN
else
    bin=$("$here/build.sh" | tail -1) || die "build.sh failed"
fi
for t in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [[ -x $bin/$t ]] || die "$bin/$t missing (run build.sh, or set PICOLET_CLUSTER_BIN)"
done

started=0
cleanup_on_error() {
    local rc=$?
    if ((rc != 0 && started)); then
        echo "up.sh: failed, stopping what was started (logs stay in $dir/logs)" >&2
        "$here/down.sh" "$dir" >&2 || true
    fi
}
trap cleanup_on_error EXIT
# So that an interrupted up.sh also stops what it started.
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# --- certificates -----------------------------------------------------------
pki=$dir/pki
new_ca "$pki"
new_key "$pki/apiserver.key" rsa
sign "$pki" "$pki/apiserver.key" "$pki/apiserver.crt" "/CN=kube-apiserver" server \
    "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
client_cert() { # name subject
    new_key "$pki/$1.key" rsa
    sign "$pki" "$pki/$1.key" "$pki/$1.crt" "$2" client
}
client_cert admin "/O=system:masters/CN=kubernetes-admin"
client_cert controller-manager "/CN=system:kube-controller-manager"
client_cert scheduler "/CN=system:kube-scheduler"
client_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
# The aggregation layer's front proxy, with its own CA as kubeadm does (also
# stops kube-controller-manager and kube-scheduler from complaining about
# an empty requestheader CA).
mkdir -p "$pki/front-proxy"
new_ca "$pki/front-proxy"
new_key "$pki/front-proxy/client.key" rsa
sign "$pki/front-proxy" "$pki/front-proxy/client.key" "$pki/front-proxy/client.crt" "/CN=front-proxy-client" client
new_key "$pki/sa.key" rsa
openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null || die "openssl: service-account public key"
(
    umask 077
    for n in "${token_nodes[@]}"; do
        echo "$(openssl rand -hex 24),system:node:$n,node-$n,\"system:nodes\""
    done >"$pki/tokens.csv"
)

# --- ports ------------------------------------------------------------------
# Local TCP ports in use (any state), from /proc/net/tcp{,6}.
ports_in_use() {
    local f sl laddr rest
    for f in /proc/net/tcp /proc/net/tcp6; do
        [[ -r $f ]] || continue
        while read -r sl laddr rest; do
            [[ $sl == sl ]] && continue
            echo $((16#${laddr##*:}))
        done <"$f"
    done
}
# 0 when something listens on 127.0.0.1:PORT (or on any address).
listening() {
    local port=$1 hex f sl laddr _remote st rest
    printf -v hex '%04X' "$port"
    for f in /proc/net/tcp /proc/net/tcp6; do
        [[ -r $f ]] || continue
        while read -r sl laddr _remote st rest; do
            [[ $st == 0A && ${laddr##*:} == "$hex" ]] && return 0
        done <"$f"
    done
    return 1
}

# Ports are picked at random outside the kernel's ephemeral range, under a
# lock held until every component listens, so clusters started at the same
# time never pick the same port.
lockfile=${TMPDIR:-/tmp}/picolet-cluster-ports.lock
exec 9>>"$lockfile" || die "cannot open $lockfile"
chmod 666 "$lockfile" 2>/dev/null || true
flock -w 300 9 || die "timed out waiting for $lockfile"
read -r eph_lo eph_hi </proc/sys/net/ipv4/ip_local_port_range || { eph_lo=32768; eph_hi=60999; }
if ((eph_lo > 12000)); then lo=10000 hi=$((eph_lo - 1)); else lo=$((eph_hi + 1)) hi=65000; fi
declare -A taken=()
while read -r p; do taken[$p]=1; done < <(ports_in_use)
pick_port() {
    local p i
    for ((i = 0; i < 1000; i++)); do
        p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
        [[ -z ${taken[$p]:-} ]] || continue
        taken[$p]=1
        echo "$p"
        return 0
    done
    die "no free port in $lo-$hi"
}
etcd_port=$(pick_port); taken[$etcd_port]=1
etcd_peer_port=$(pick_port); taken[$etcd_peer_port]=1
apiserver_port=$(pick_port); taken[$apiserver_port]=1
kcm_port=$(pick_port); taken[$kcm_port]=1
scheduler_port=$(pick_port); taken[$scheduler_port]=1
url=https://127.0.0.1:$apiserver_port

# --- kubeconfigs ------------------------------------------------------------
write_kubeconfig "$dir/admin.kubeconfig" "$url" "$pki/ca.crt" kubernetes-admin cert "$pki/admin.crt" "$pki/admin.key"
write_kubeconfig "$dir/controller-manager.kubeconfig" "$url" "$pki/ca.crt" system:kube-controller-manager \
    cert "$pki/controller-manager.crt" "$pki/controller-manager.key"
write_kubeconfig "$dir/scheduler.kubeconfig" "$url" "$pki/ca.crt" system:kube-scheduler \
    cert "$pki/scheduler.crt" "$pki/scheduler.key"

# --- processes --------------------------------------------------------------
# Each in its own session (so its own process group), stdin/stdout/stderr
# away from ours (a caller reading our output must not wait for them), the
# port lock not inherited.
start() {
    local name=$1
    shift
    setsid "$@" </dev/null >"$dir/logs/$name.log" 2>&1 9>&- &
    echo $! >"$dir/pids/$name.pid"
    started=1
}
alive() { # NAME: its process exists and is not a zombie
    local pid st=""
    read -r pid <"$dir/pids/$1.pid"
    # Not $(<file): under set -e it ends bash 5.2 when the file is gone.
    { IFS= read -r -d '' st; } 2>/dev/null <"/proc/$pid/status" || true
    [[ -n $st && $st != *$'\nState:\tZ'* ]]
}
components=(etcd kube-apiserver kube-controller-manager kube-scheduler)
check_alive() {
    local c
    for c in "${components[@]}"; do
        [[ -f $dir/pids/$c.pid ]] || continue
        alive "$c" || {
            echo "up.sh: $c exited; the end of $dir/logs/$c.log:" >&2
            tail -n 25 "$dir/logs/$c.log" >&2
            exit 1
        }
    done
}
timeout=${PICOLET_CLUSTER_TIMEOUT:-180}
deadline=$((SECONDS + timeout))
# wait_for WHAT COMMAND...: poll COMMAND until it succeeds, a component
# dies, or the deadline passes.
wait_for() {
    local what=$1
    shift
    until "$@" >/dev/null 2>&1; do
        check_alive
        ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what (logs in $dir/logs)"
        sleep 0.1
    done
}

start etcd "$bin/etcd" --name default --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "default=http://127.0.0.1:$etcd_peer_port" --unsafe-no-fsync

# --endpoint-reconciler-type none: the default/kubernetes Service still
# exists, but its Endpoints would be 127.0.0.1, which validation refuses
# (loopback), every 10s in the log.
start kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$apiserver_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction --allow-privileged=true \
    --service-cluster-ip-range 10.96.0.0/12 \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP,Hostname,ExternalIP \
    --requestheader-client-ca-file "$pki/front-proxy/ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$pki/front-proxy/client.crt" --proxy-client-key-file "$pki/front-proxy/client.key" \
    --endpoint-reconciler-type none

if [[ -n $owner ]]; then
    # Stops the cluster once the owner is gone (its start time guards against
    # a reused pid), or exits once the cluster is.
    # shellcheck disable=SC2016 # expanded by the watcher's bash
    start watcher bash -c '
        dir=$1 owner=$2 here=$3
        starttime() { local s=""; { IFS= read -r s; } 2>/dev/null <"/proc/$1/stat" || true
                     [[ -n $s ]] || return 0; s=${s##*) }; set -- $s; echo "${20}"; }
        want=$(starttime "$owner")
        ours() { local f p; for f in "$dir"/pids/*.pid; do
                   [[ $f == */watcher.pid ]] && continue
                   read -r p <"$f" || continue; [[ -e /proc/$p ]] && return 0; done; return 1; }
        while [[ $(starttime "$owner") == "$want" ]]; do
            ours || exit 0
            sleep 1
        done
        echo "owner $owner exited: stopping the cluster"
        exec "$here/down.sh" --drop-data "$dir"
    ' picolet-cluster-watcher "$dir" "$owner" "$here"
fi

cacurl() { curl -fsS --max-time 5 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" -o /dev/null "$@"; }
# They authenticate their own clients with the apiserver's help (and exit if
# their RBAC is not there yet): start them once the apiserver is ready.
wait_for "$url/readyz" cacurl "$url/readyz"

start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" --cert-dir "$dir/run/controller-manager" \
    --leader-elect=false --use-service-account-credentials --controllers '*' \
    --root-ca-file "$pki/ca.crt" --service-account-private-key-file "$pki/sa.key" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --allocate-node-cidrs=true --cluster-cidr 10.244.0.0/16 --service-cluster-ip-range 10.96.0.0/12

start kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$dir/scheduler.kubeconfig" \
    --authentication-kubeconfig "$dir/scheduler.kubeconfig" \
    --authorization-kubeconfig "$dir/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$scheduler_port" --cert-dir "$dir/run/scheduler" \
    --leader-elect=false

wait_for "kube-controller-manager and kube-scheduler to listen on their ports" \
    bash -c "$(declare -f listening); for p in $etcd_port $apiserver_port $kcm_port $scheduler_port; do listening \$p || exit 1; done"
flock -u 9
exec 9>&-

wait_for "kube-scheduler /healthz" curl -fsS --max-time 5 -k -o /dev/null "https://127.0.0.1:$scheduler_port/healthz"
wait_for "kube-controller-manager /healthz" curl -fsS --max-time 5 -k -o /dev/null "https://127.0.0.1:$kcm_port/healthz"
wait_for "the default ServiceAccount" cacurl "$url/api/v1/namespaces/default/serviceaccounts/default"
wait_for "the kube-root-ca.crt ConfigMap" cacurl "$url/api/v1/namespaces/default/configmaps/kube-root-ca.crt"

pidof_() { cat "$dir/pids/$1.pid" 2>/dev/null || true; }
{
    echo "# picolet test cluster, written by tests/cluster/up.sh; stop it with tests/cluster/down.sh"
    printf 'CLUSTER_DIR=%q\n' "$dir"
    printf 'APISERVER_URL=%q\n' "$url"
    printf 'APISERVER_PORT=%q\n' "$apiserver_port"
    printf 'ETCD_PORT=%q\n' "$etcd_port"
    printf 'ETCD_PEER_PORT=%q\n' "$etcd_peer_port"
    printf 'CONTROLLER_MANAGER_PORT=%q\n' "$kcm_port"
    printf 'SCHEDULER_PORT=%q\n' "$scheduler_port"
    printf 'BIN=%q\n' "$bin"
    printf 'KUBECTL=%q\n' "$bin/kubectl"
    printf 'K8S_VERSION=%q\n' "$PICOLET_K8S_VERSION"
    printf 'ADMIN_KUBECONFIG=%q\n' "$dir/admin.kubeconfig"
    printf 'CA_CERT=%q\n' "$pki/ca.crt"
    printf 'CA_KEY=%q\n' "$pki/ca.key"
    printf 'TOKEN_NODES=%q\n' "${token_nodes[*]}"
    printf 'SERVICE_CIDR=%q\n' 10.96.0.0/12
    printf 'CLUSTER_CIDR=%q\n' 10.244.0.0/16
    printf 'ETCD_PID=%q\n' "$(pidof_ etcd)"
    printf 'APISERVER_PID=%q\n' "$(pidof_ kube-apiserver)"
    printf 'CONTROLLER_MANAGER_PID=%q\n' "$(pidof_ kube-controller-manager)"
    printf 'SCHEDULER_PID=%q\n' "$(pidof_ kube-scheduler)"
    printf 'WATCHER_PID=%q\n' "$(pidof_ watcher)"
    printf 'OWNER_PID=%q\n' "$owner"
} >"$dir/env.tmp"
mv -f "$dir/env.tmp" "$dir/env"
echo "up.sh: cluster ready at $url (kubectl --kubeconfig $dir/admin.kubeconfig), ${SECONDS}s" >&2
echo "$dir/env"
