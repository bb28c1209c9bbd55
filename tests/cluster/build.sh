#!/usr/bin/env bash
# Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
# kubectl from the Go module proxy into
#   ${PICOLET_CLUSTER_CACHE:-/var/cache/picolet-cluster}/bin/<k8s>-<etcd>/
# and print that directory on the last line of stdout. Does nothing (but
# print it) when the binaries are already there. The Go module and build
# caches live in the same cache directory, so a rebuild is quick.
#
# Env: PICOLET_CLUSTER_CACHE, GO (path of the go command).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
k8s=$PICOLET_K8S_VERSION
etcd=$PICOLET_ETCD_VERSION
cache=${PICOLET_CLUSTER_CACHE:-/var/cache/picolet-cluster}
bin=$cache/bin/$k8s-$etcd
tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)

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
for m in k8s etcd; do
    need=$(sed -n 's/^go \([0-9.]*\).*/\1/p' "$here/$m/go.mod")
    # sort -V puts the older first: the local Go must not be older than the module's go line.
    [[ $(printf '%s\n%s\n' "go$need" "$go_have" | sort -V | head -1) == "go$need" ]] ||
        die "$GO is $go_have but tests/cluster/$m/go.mod needs go $need (GOTOOLCHAIN=local: no download)"
done

# The tag's commit time serves as build date: reproducible, and honest enough.
info=$(cd "$here/k8s" && "$GO" mod download -json "k8s.io/kubernetes@$k8s") || die "cannot download k8s.io/kubernetes@$k8s"
build_date=$(sed -n 's/^\t"Time": "\(.*\)",\{0,1\}$/\1/p' <<<"$info" | head -1)
[[ -n $build_date ]] || build_date=1970-01-01T00:00:00Z
minor=${k8s#v1.}
minor=${minor%%.*}
x=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x+=" -X $p.gitVersion=$k8s -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    x+=" -X $p.gitTreeState=clean -X $p.gitCommit=$PICOLET_K8S_COMMIT -X $p.buildDate=$build_date"
done

# Leftovers of a build that was killed (we hold the lock: none is running).
rm -rf "$cache/bin"/.build-*
tmp=$(mktemp -d "$cache/bin/.build-$k8s-$etcd.XXXXXX")
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

start=$SECONDS
echo "build.sh: building Kubernetes $k8s and etcd $etcd with $go_have into $bin (minutes when cold)" >&2
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

for t in "${tools[@]}"; do [[ -x $tmp/$t ]] || die "$t missing after the build"; done
"$tmp/kube-apiserver" --version | grep -qF "Kubernetes $k8s" ||
    die "kube-apiserver reports '$("$tmp/kube-apiserver" --version)', not $k8s: version ldflags did not apply"

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
