# Shared by tests/run.sh, tests/demo.sh and the benchmarks: installing what
# picolet and its tests need on Debian, and cleaning up after a picolet run.

# Debian packages. The demo needs the runtime, the image tools and what builds
# picolet (gcc for ring's C); the tests need the rest too.
PICOLET_DEMO_PACKAGES=(runc umoci skopeo busybox-static curl jq ca-certificates gcc libc6-dev)
PICOLET_APT_PACKAGES=("${PICOLET_DEMO_PACKAGES[@]}" iproute2 systemd python3 python3-pip openssl util-linux docker-registry apache2-utils time)

# install_deps [demo]: installs what is missing (apt-get, as root), and finds cargo.
install_deps() {
    local wanted=("${PICOLET_APT_PACKAGES[@]}") missing=()
    [[ ${1:-} == demo ]] && wanted=("${PICOLET_DEMO_PACKAGES[@]}")
    for p in "${wanted[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if ((${#missing[@]})); then
        echo "installing: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    if ! command -v cargo >/dev/null; then
        [[ -x $HOME/.cargo/bin/cargo ]] && export PATH=$HOME/.cargo/bin:$PATH
    fi
    command -v cargo >/dev/null || {
        echo "cargo not found: install Rust with rustup (https://rustup.rs), then run this again" >&2
        return 1
    }
    [[ ${1:-} == demo ]] && return 0
    # The gRPC probe test talks to grpcio's own health server.
    if ! python3 -c 'import grpc, grpc_health.v1.health' 2>/dev/null; then
        echo "installing: grpcio grpcio-health-checking (pip)"
        python3 -m pip install -q --break-system-packages grpcio grpcio-health-checking 2>/dev/null ||
            python3 -m pip install -q grpcio grpcio-health-checking
    fi
}

# The Go toolchain the test control plane is built with (tests/cluster/, the
# only Go in the project). Debian's golang-go is too old, so when no recent
# enough go is on the machine the official toolchain is fetched from the Go
# module proxy (the same zip `GOTOOLCHAIN=` downloads) into the cache.
PICOLET_GO_VERSION=1.26.8
install_go() {
    local cache=${PICOLET_CLUSTER_CACHE:-/var/cache/picolet-cluster} have
    for g in "${GO:-}" "$(command -v go 2>/dev/null)" /usr/local/go/bin/go "$cache/go/bin/go"; do
        [[ -n $g && -x $g ]] || continue
        have=$("$g" env GOVERSION 2>/dev/null) || continue
        if [[ $(printf '%s\n%s\n' "go$PICOLET_GO_VERSION" "$have" | sort -V | head -1) == "go$PICOLET_GO_VERSION" ]]; then
            export GO=$g
            return 0
        fi
    done
    local arch
    case $(uname -m) in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
    local v=v0.0.1-go$PICOLET_GO_VERSION.linux-$arch
    echo "installing: Go $PICOLET_GO_VERSION from the Go module proxy (for the test control plane)"
    mkdir -p "$cache"
    local tmp
    tmp=$(mktemp -d "$cache/go-download.XXXXXX")
    curl -fsSL --retry 3 -o "$tmp/go.zip" "https://proxy.golang.org/golang.org/toolchain/@v/$v.zip" || {
        rm -rf "$tmp"
        echo "cannot download Go $PICOLET_GO_VERSION; install Go >= $PICOLET_GO_VERSION and set GO=/path/to/go" >&2
        return 1
    }
    python3 - "$tmp/go.zip" "$tmp/x" <<'PY'
import os, stat, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for i in z.infolist():
        path = z.extract(i, sys.argv[2])
        mode = i.external_attr >> 16
        if mode:
            os.chmod(path, stat.S_IMODE(mode))
PY
    rm -rf "$cache/go"
    mv "$tmp/x/golang.org/toolchain@$v" "$cache/go"
    rm -rf "$tmp"
    export GO=$cache/go/bin/go
}

need_root() {
    [[ $(id -u) == 0 ]] || {
        echo "run as root (picolet mounts overlayfs and runs runc): sudo $0" >&2
        exit 1
    }
}

# Stops everything a picolet with root dir $1 left behind: its containers,
# its reaper, and every mount under the root dir.
cleanup_root() {
    local root=$1
    [[ -d $root ]] || return 0
    local id
    for id in $(runc --root "$root/runc" list -q 2>/dev/null); do
        runc --root "$root/runc" delete -f "$id" >/dev/null 2>&1 || true
    done
    [[ -f $root/reaper.pid ]] && kill -9 "$(cat "$root/reaper.pid")" 2>/dev/null || true
    awk -v r="$root" 'index($5, r) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
}

# picolet's flags for this host: on a host without cgroup v2 controllers (a
# cgroup v1 CI host) the start-up check is passed with upstream's switches.
host_flags() {
    if ! grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
        echo "--cgroups-per-qos=false --enforce-node-allocatable="
    fi
}
