#!/usr/bin/env bash
# End-to-end check of the test control plane: start one (up.sh), check the
# version, readiness, Node authorization with a node client certificate and
# with a bearer token, podCIDR allocation, the --owner-pid watcher, stop it
# (down.sh) and check nothing is left running.
#
#   smoke.sh     (in a new temporary directory, removed on success)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fail() { echo "smoke.sh: FAIL: $*" >&2; exit 1; }
ok() { echo "smoke.sh: ok: $*"; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/picolet-cluster-smoke.XXXXXX")
echo "smoke.sh: cluster in $dir"
trap '"$here/down.sh" "$dir" >/dev/null 2>&1 || true' EXIT
# Processes with DIR in their command line.
leftovers() { pgrep -af -- "$dir" || true; }

"$here/up.sh" "$dir" --token-node token-node >/dev/null
# shellcheck disable=SC1091
source "$dir/env"
k() { "$KUBECTL" --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }

v=$(k version -o json)
grep -q "\"gitVersion\": \"$K8S_VERSION\"" <<<"${v#*serverVersion}" || fail "server version is not $K8S_VERSION: $v"
grep -q "\"gitVersion\": \"$K8S_VERSION\"" <<<"${v%%serverVersion*}" || fail "client version is not $K8S_VERSION: $v"
ok "kubectl version: client and server $K8S_VERSION"
[[ $(k get --raw /readyz) == ok ]] || fail "/readyz"
ok "/readyz"

node=smoke-node
"$here/node-kubeconfig.sh" "$dir" "$node" "$dir/node-$node.kubeconfig" >/dev/null
nodejson() { printf '{"apiVersion":"v1","kind":"Node","metadata":{"name":"%s","labels":{"kubernetes.io/hostname":"%s"}}}' "$1" "$1"; }
post_node() { # name curl-auth-args... -> HTTP status
    local name=$1
    shift
    curl -sS -o "$dir/post-$name.json" -w '%{http_code}' --cacert "$CA_CERT" "$@" \
        -H 'Content-Type: application/json' -X POST --data "$(nodejson "$name")" "$APISERVER_URL/api/v1/nodes"
}
cert=(--cert "$dir/node-$node.crt" --key "$dir/node-$node.key")
s=$(post_node "$node" "${cert[@]}")
[[ $s == 201 ]] || fail "node $node creating its Node: HTTP $s: $(cat "$dir/post-$node.json")"
ok "node $node (client certificate) created its Node: HTTP 201"
s=$(post_node other-node "${cert[@]}")
[[ $s == 403 ]] || fail "node $node creating Node other-node: HTTP $s, want 403"
ok "node $node cannot create Node other-node: HTTP 403"
"$KUBECTL" --kubeconfig "$dir/node-$node.kubeconfig.inline" get node "$node" -o name >/dev/null ||
    fail "node $node reading its Node with the inline kubeconfig"
ok "inline kubeconfig works"
if "$KUBECTL" --kubeconfig "$dir/node-$node.kubeconfig" get pods -A >/dev/null 2>&1; then
    fail "node $node could list all pods"
fi
ok "node $node cannot list pods in all namespaces"
if k auth can-i --as "system:node:x" --as-group system:nodes list pods --all-namespaces >/dev/null 2>&1; then
    fail "kubectl auth can-i --as system:node:x list pods --all-namespaces said yes"
fi
ok "kubectl auth can-i --as system:node:x --as-group system:nodes list pods --all-namespaces: no"

"$here/node-kubeconfig.sh" --token "$dir" token-node "$dir/node-token-node.kubeconfig" >/dev/null
token=$(sed -n 's/^ *token: //p' "$dir/node-token-node.kubeconfig")
s=$(post_node token-node -H "Authorization: Bearer $token")
[[ $s == 201 ]] || fail "token-node creating its Node: HTTP $s: $(cat "$dir/post-token-node.json")"
[[ $("$KUBECTL" --kubeconfig "$dir/node-token-node.kubeconfig" auth whoami -o jsonpath='{.status.userInfo.username}') == system:node:token-node ]] ||
    fail "token kubeconfig does not authenticate as system:node:token-node"
ok "token-node (bearer token) created its Node: HTTP 201"

deadline=$((SECONDS + 60))
until cidr=$(k get node "$node" -o jsonpath='{.spec.podCIDR}') && [[ -n $cidr ]]; do
    ((SECONDS < deadline)) || fail "node $node got no podCIDR in 60s"
    sleep 0.2
done
ok "node $node got podCIDR $cidr"

# The node reports Ready with some capacity, as a kubelet does: the node
# lifecycle controller removes the not-ready taint, the scheduler binds a
# pod to it, ServiceAccount admission gives the pod its token volume, and
# the node may read the pod.
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
res='{"cpu":"2","memory":"4Gi","pods":"110"}'
status=$(printf '{"status":{"capacity":%s,"allocatable":%s,"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"smoke","lastHeartbeatTime":"%s","lastTransitionTime":"%s"}]}}' "$res" "$res" "$now" "$now")
# (with curl: kubectl patch would first get nodes/status, which a node may not)
s=$(curl -sS -o "$dir/patch-$node.json" -w '%{http_code}' --cacert "$CA_CERT" "${cert[@]}" -X PATCH \
    -H 'Content-Type: application/strategic-merge-patch+json' --data "$status" "$APISERVER_URL/api/v1/nodes/$node/status")
[[ $s == 200 ]] || fail "node $node patching its status: HTTP $s: $(cat "$dir/patch-$node.json")"
deadline=$((SECONDS + 60))
until taints=$(k get node "$node" -o jsonpath='{.spec.taints}') && [[ $taints != *not-ready* ]]; do
    ((SECONDS < deadline)) || fail "node $node still has the not-ready taint 60s after reporting Ready: $taints"
    sleep 0.2
done
ok "node $node Ready: the not-ready taint is gone"
k run smoke --image=registry.invalid/pause:none --restart=Never >/dev/null
deadline=$((SECONDS + 60))
until bound=$(k get pod smoke -o jsonpath='{.spec.nodeName}') && [[ -n $bound ]]; do
    ((SECONDS < deadline)) || fail "pod smoke not scheduled in 60s: $(k get pod smoke -o jsonpath='{.status}')"
    sleep 0.2
done
[[ $bound == "$node" ]] || fail "pod smoke scheduled to $bound, not $node"
[[ $(k get pod smoke -o jsonpath='{.spec.volumes[*].name}') == *kube-api-access-* ]] ||
    fail "pod smoke has no kube-api-access volume (ServiceAccount admission)"
"$KUBECTL" --kubeconfig "$dir/node-$node.kubeconfig" get pods -A --field-selector "spec.nodeName=$node" -o name | grep -qx pod/smoke ||
    fail "node $node cannot list the pods bound to it"
ok "pod scheduled to $node, with its service account token volume, visible to the node"

"$here/down.sh" "$dir"
[[ -z $(leftovers) ]] || fail "processes left after down.sh: $(leftovers)"
"$here/down.sh" "$dir"
ok "down.sh stopped everything (and again is a no-op)"

# The watcher: a cluster owned by a short-lived process goes away with it.
sleep 600 &
owner=$!
"$here/up.sh" "$dir" --owner-pid "$owner" >/dev/null
kill "$owner"
wait "$owner" 2>/dev/null || true
deadline=$((SECONDS + 30))
while [[ -n $(leftovers) ]]; do
    ((SECONDS < deadline)) || fail "cluster still running 30s after its owner exited: $(leftovers)"
    sleep 0.2
done
ok "--owner-pid: cluster stopped after its owner exited"

trap - EXIT
rm -rf "$dir"
echo "smoke.sh: all ok"
