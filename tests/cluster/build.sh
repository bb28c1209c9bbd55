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
#   build.sh e2e              for tests/conformance, into bin/e2e-<k8s>/: e2e.test,
#                             the ginkgo CLI, kube-proxy and the image commands
#                             agnhost and nonewprivs (module tests/conformance/e2e)
#   build.sh coredns          CoreDNS with the plugins the conformance harness
#                             uses, into bin/coredns-<version>/ (module
#                             tests/conformance/coredns)
#
# Each target has its own lock, so a long e2e build does not hold up the
# control plane's.
#
# Env: PICOLET_CLUSTER_CACHE, GO (path of the go command).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
k8s=$PICOLET_K8S_VERSION
etcd=$PICOLET_ETCD_VERSION
ms=$PICOLET_METRICS_SERVER_VERSION
cd_version=$PICOLET_COREDNS_VERSION
cache=${PICOLET_CLUSTER_CACHE:-/var/cache/picolet-cluster}
# modules: directories of go.mod files, relative to this one.
lock=build.lock
case ${1:-} in
"")
    what="Kubernetes $k8s and etcd $etcd" name=$k8s-$etcd modules=(k8s etcd)
    tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl) ;;
metrics-server)
    what="metrics-server $ms" name=metrics-server-$ms modules=(metrics-server) tools=(metrics-server) ;;
e2e)
    what="e2e.test, ginkgo, kube-proxy and agnhost of Kubernetes $k8s" name=e2e-$k8s
    modules=(../conformance/e2e) tools=(e2e.test ginkgo kube-proxy agnhost nonewprivs) lock=build-e2e.lock ;;
coredns)
    what="CoreDNS $cd_version" name=coredns-$cd_version modules=(../conformance/coredns) tools=(coredns)
    lock=build-coredns.lock ;;
*) echo "usage: build.sh [metrics-server|e2e|coredns]" >&2; exit 1 ;;
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
exec 9>"$cache/$lock"
if ! flock -n 9; then
    echo "build.sh: another build holds $cache/$lock, waiting" >&2
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
        die "$GO is $go_have but $m/go.mod (from tests/cluster) needs go $need (GOTOOLCHAIN=local: no download)"
done

# Leftovers of a build of this target that was killed (we hold its lock:
# none is running). Other targets' builds may be running under their locks
# (older copies of this script removed every .build-*: hence .tmp-).
rm -rf "$cache/bin/.tmp-$name".* "$cache/bin/.build-$name".*
tmp=$(mktemp -d "$cache/bin/.tmp-$name.XXXXXX")
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
coredns-*)
    (
        cd "$here/../conformance/coredns"
        "$GO" build -trimpath -ldflags "-s -w" -o "$tmp/coredns" .
    ) || die "building CoreDNS $cd_version failed"
    "$tmp/coredns" -version | grep -qF "CoreDNS-${cd_version#v}" ||
        die "coredns reports '$("$tmp/coredns" -version)', not $cd_version"
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
    ;;&
e2e-*)
    (
        cd "$here/../conformance/e2e"
        # The test images' commands first (small), then the rest; e2e.test
        # is a test binary: go test -c, without vet (it is not our code).
        "$GO" build -trimpath -ldflags "-s -w$x" -o "$tmp/" \
            k8s.io/kubernetes/test/images/agnhost \
            k8s.io/kubernetes/test/images/nonewprivs \
            k8s.io/kubernetes/cmd/kube-proxy \
            github.com/onsi/ginkgo/v2/ginkgo &&
            echo "build.sh: agnhost, nonewprivs, kube-proxy and ginkgo done after $((SECONDS - start))s" >&2 &&
            "$GO" test -c -vet=off -trimpath -ldflags "-s -w$x" -o "$tmp/e2e.test" k8s.io/kubernetes/test/e2e
    ) || die "building e2e.test and its tools for Kubernetes $k8s failed"
    "$tmp/e2e.test" --version | grep -qF "$k8s" ||
        die "e2e.test reports '$("$tmp/e2e.test" --version)', not $k8s: version ldflags did not apply"
    ;;
*-*)
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
