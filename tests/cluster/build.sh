#!/usr/bin/env bash
# Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
# kubectl from the Go module proxy into
#   ${PICOLET_CLUSTER_CACHE:-/var/cache/picolet-cluster}/bin/<k8s>-<etcd>/
# and print that directory on the last line of stdout. Does nothing (but
# print it) when the binaries are already there. The Go module and build
# caches live in the same cache directory, so a rebuild is quick.
#
#   build.sh                  the control plane and kubectl
#   build.sh metrics-server   metrics-server alone, into bin/metrics-server-<version>/
#                             (only the tests of `kubectl top` need it)
#
# Env: PICOLET_CLUSTER_CACHE, GO (path of the go command).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
k8s=$PICOLET_K8S_VERSION
etcd=$PICOLET_ETCD_VERSION
ms=$PICOLET_METRICS_SERVER_VERSION
cache=${PICOLET_CLUSTER_CACHE:-/var/cache/picolet-cluster}
case ${1:-} in
"")
    what="Kubernetes $k8s and etcd $etcd" name=$k8s-$etcd modules=(k8s etcd)
    tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl) ;;
metrics-server)
    what="metrics-server $ms" name=metrics-server-$ms modules=(metrics-server) tools=(metrics-server) ;;
*) echo "usage: build.sh [metrics-server]" >&2; exit 1 ;;
esac
bin=$cache/bin/$name

have_all() {
    local t
    for t in "${tools[@]}"; do [[ -x $bin/$t ]] || return 1; done
}

if have_all; then
    echo "$bin"
    exit 0
fi

die() { echo "build.sh: $*" >&2; exit 1; }

GO=${GO:-$(command -v go || true)}
[[ -n $GO ]] || GO=/usr/local/go/bin/go
[[ -x $GO ]] || die "go not found: install Go (see the go line of $here/etcd/go.mod) or set GO=/path/to/go"
command -v flock >/dev/null || die "flock not found (util-linux)"

mkdir -p "$cache/bin" || die "cannot create $cache (set PICOLET_CLUSTER_CACHE to a writable directory)"

# Several test binaries may ask at once: one builds, the others wait.
exec 9>"$cache/build.lock"
if ! flock -n 9; then
    echo "build.sh: another build holds $cache/build.lock, waiting" >&2
    flock 9
fi
if have_all; then
    echo "$bin"
    exit 0
fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
export GOMODCACHE=$cache/gomod GOCACHE=$cache/gocache
go_have=$("$GO" env GOVERSION)
for m in "${modules[@]}"; do
    need=$(sed -n 's/^go \([0-9.]*\).*/\1/p' "$here/$m/go.mod")
    # sort -V puts the older first: the local Go must not be older than the module's go line.
    [[ $(printf '%s\n%s\n' "go$need" "$go_have" | sort -V | head -1) == "go$need" ]] ||
        die "$GO is $go_have but tests/cluster/$m/go.mod needs go $need (GOTOOLCHAIN=local: no download)"
done

# Leftovers of a build that was killed (we hold the lock: none is running).
rm -rf "$cache/bin"/.build-*
tmp=$(mktemp -d "$cache/bin/.build-$name.XXXXXX")
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# tag_info DIR MODULE@VERSION: sets build_date to the tag's commit time from
# the proxy (reproducible, and honest enough) and commit to the commit the
# proxy says the tag points at ("unknown" when it does not say).
tag_info() {
    local info
    info=$(cd "$here/$1" && "$GO" mod download -json "$2") || die "cannot download $2"
    build_date=$(sed -n 's/^\t"Time": "\(.*\)",\{0,1\}$/\1/p' <<<"$info" | head -1)
    commit=$(sed -n 's/^\t\t"Hash": "\(.*\)",\{0,1\}$/\1/p' <<<"$info" | head -1)
    [[ -n $build_date ]] || build_date=1970-01-01T00:00:00Z
    [[ -n $commit ]] || commit=unknown
}

start=$SECONDS
echo "build.sh: building $what with $go_have into $bin (minutes when cold)" >&2
case $name in
metrics-server-*)
    tag_info metrics-server "sigs.k8s.io/metrics-server@$ms"
    # Its Makefile sets client-go's version variables (--version prints them).
    p=k8s.io/client-go/pkg/version
    (
        cd "$here/metrics-server"
        "$GO" build -trimpath \
            -ldflags "-s -w -X $p.gitVersion=$ms -X $p.gitCommit=$commit -X $p.buildDate=$build_date" \
            -o "$tmp/" sigs.k8s.io/metrics-server/cmd/metrics-server
    ) || die "building metrics-server $ms failed"
    "$tmp/metrics-server" --version | grep -qxF "$ms" ||
        die "metrics-server reports '$("$tmp/metrics-server" --version)', not $ms: version ldflags did not apply"
    ;;
*)
    tag_info k8s "k8s.io/kubernetes@$k8s"
    minor=${k8s#v1.}
    minor=${minor%%.*}
    x=""
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        x+=" -X $p.gitVersion=$k8s -X $p.gitMajor=1 -X $p.gitMinor=$minor"
        x+=" -X $p.gitTreeState=clean -X $p.gitCommit=$PICOLET_K8S_COMMIT -X $p.buildDate=$build_date"
    done
    (
        cd "$here/k8s"
        "$GO" build -trimpath -ldflags "-s -w$x" -o "$tmp/" \
            k8s.io/kubernetes/cmd/kube-apiserver \
            k8s.io/kubernetes/cmd/kube-controller-manager \
            k8s.io/kubernetes/cmd/kube-scheduler \
            k8s.io/kubernetes/cmd/kubectl
    ) || die "building Kubernetes $k8s failed"
    echo "build.sh: Kubernetes done after $((SECONDS - start))s" >&2
    (
        cd "$here/etcd"
        "$GO" build -trimpath -ldflags "-s -w" \
            -o "$tmp/etcd" go.etcd.io/etcd/server/v3
    ) || die "building etcd $etcd failed"
    echo "build.sh: etcd done after $((SECONDS - start))s" >&2
    "$tmp/kube-apiserver" --version | grep -qF "Kubernetes $k8s" ||
        die "kube-apiserver reports '$("$tmp/kube-apiserver" --version)', not $k8s: version ldflags did not apply"
    ;;
esac

for t in "${tools[@]}"; do [[ -x $tmp/$t ]] || die "$t missing after the build"; done

# A rename is atomic: the directory is either complete or absent. A stale
# partial one (from an older build.sh) is moved aside first.
if [[ -e $bin ]]; then
    mv "$bin" "$tmp.old"
    rm -rf "$tmp.old"
fi
mv -T "$tmp" "$bin"
trap - EXIT
echo "build.sh: built in $((SECONDS - start))s" >&2
echo "$bin"
