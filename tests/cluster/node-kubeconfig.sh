#!/usr/bin/env bash
# A kubeconfig for a kubelet on node NODENAME of the cluster in DIR.
#
#   node-kubeconfig.sh DIR NODENAME OUT [--key-type ec|rsa]
#       Client certificate CN=system:node:NODENAME, O=system:nodes, signed by
#       the cluster CA: how a kubelet authenticates in production. With
#       B = OUT minus a trailing .kubeconfig, writes B.key, B.crt, B-ca.crt,
#       OUT (pointing at those files) and OUT.inline (the same as
#       client-certificate-data, client-key-data, certificate-authority-data).
#       --key-type: ec (P-256, as a kubelet's own certificate requests;
#       default) or rsa (2048). Keys are PKCS#8 PEM.
#   node-kubeconfig.sh --token DIR NODENAME OUT
#       Bearer token of user system:node:NODENAME (group system:nodes) from
#       the apiserver's static token file: up.sh --token-node NODENAME must
#       have made it (up.sh makes one for token-node by default). Writes
#       B-ca.crt and OUT.
#
# Prints OUT.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "node-kubeconfig.sh: $*" >&2; exit 1; }
usage() { die "usage: node-kubeconfig.sh [--token] [--key-type ec|rsa] DIR NODENAME OUT"; }

token=0 key_type=ec args=()
while (($#)); do
    case $1 in
        --token) token=1; shift ;;
        --key-type) (($# >= 2)) || usage; key_type=$2; shift 2 ;;
        --key-type=*) key_type=${1#*=}; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) usage ;;
        *) args+=("$1"); shift ;;
    esac
done
((${#args[@]} == 3)) || usage
dir=${args[0]} node=${args[1]} out=${args[2]}
[[ $key_type == ec || $key_type == rsa ]] || die "--key-type $key_type: ec or rsa"
[[ -f $dir/env ]] || die "$dir/env not found: no cluster started there with up.sh"
[[ $node =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$ && ${#node} -le 253 ]] ||
    die "$node: not a valid node name (lowercase DNS subdomain)"
# shellcheck source=pki.sh
source "$here/pki.sh"
# shellcheck disable=SC1091
source "$dir/env"
outdir=$(cd "$(dirname "$out")" 2>/dev/null && pwd) || die "$(dirname "$out"): no such directory"
out=$outdir/$(basename "$out")
base=${out%.kubeconfig}
if ((token)); then
    t=$(awk -F, -v u="system:node:$node" '$2 == u { print $1 }' "$CLUSTER_DIR/pki/tokens.csv")
    [[ -n $t ]] || die "no token for system:node:$node in $CLUSTER_DIR/pki/tokens.csv (start the cluster with up.sh --token-node $node; there are: $TOKEN_NODES)"
fi
# The CA next to the kubeconfig too, so a copy of the files is self-contained.
cp "$CA_CERT" "$base-ca.crt"

if ((token)); then
    write_kubeconfig "$out" "$APISERVER_URL" "$base-ca.crt" "system:node:$node" token "$t"
else
    new_key "$base.key" "$key_type"
    (umask 022 && sign "$CLUSTER_DIR/pki" "$base.key" "$base.crt" "/O=system:nodes/CN=system:node:$node" client)
    write_kubeconfig "$out" "$APISERVER_URL" "$base-ca.crt" "system:node:$node" cert "$base.crt" "$base.key"
    write_kubeconfig "$out.inline" "$APISERVER_URL" "$base-ca.crt" "system:node:$node" inline "$base.crt" "$base.key"
fi
echo "$out"
