# Shared by tests/run.sh, tests/demo.sh and the benchmarks: installing what
# picolet and its tests need on Debian, and cleaning up after a picolet run.

# Debian packages: the real runtime and the tools the tests build images with.
PICOLET_APT_PACKAGES=(runc umoci skopeo busybox-static iproute2 curl jq ca-certificates gcc libc6-dev systemd python3 python3-pip)

install_deps() {
    local missing=()
    for p in "${PICOLET_APT_PACKAGES[@]}"; do
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
    # The gRPC probe test talks to grpcio's own health server.
    if ! python3 -c 'import grpc, grpc_health.v1.health' 2>/dev/null; then
        echo "installing: grpcio grpcio-health-checking (pip)"
        python3 -m pip install -q --break-system-packages grpcio grpcio-health-checking 2>/dev/null ||
            python3 -m pip install -q grpcio grpcio-health-checking
    fi
    command -v cargo >/dev/null || {
        echo "cargo not found: install Rust with rustup (https://rustup.rs), then run this again" >&2
        return 1
    }
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
