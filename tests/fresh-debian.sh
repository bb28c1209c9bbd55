#!/usr/bin/env bash
# The README's front door, tried as a newcomer would: a minimal Debian 12
# (debootstrap --variant=minbase: no sudo, no column, no curl, no jq, no gcc)
# with nothing added but Rust, a root shell in it, and the README's first
# command, `tests/demo.sh` (headless, so it exits after its table).
#
#   tests/fresh-debian.sh            the demo in a fresh bookworm chroot
#   tests/fresh-debian.sh -- CMD...  another command in it instead (e.g. -- tests/run.sh --test static_pods)
#
# The base system is cached under ${PICOLET_FRESH_CACHE:-/var/cache/picolet-fresh}
# and never changed: each run gets an overlay of its own, thrown away at the
# end. Rust is the host's toolchain, mounted read-only where rustup puts it
# (/root/.cargo, /root/.rustup); crates come from crates.io. The chroot shares
# the host's kernel, so cgroups are the host's (tests/lib.sh host_flags).
# Needs: root, debootstrap (installed if missing), network to deb.debian.org.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib.sh
need_root
cmd=(tests/demo.sh --headless)
if [[ ${1:-} == -- ]]; then
    shift
    cmd=("$@")
fi

cache=${PICOLET_FRESH_CACHE:-/var/cache/picolet-fresh}
base=$cache/bookworm
if [[ ! -x $base/bin/bash ]]; then
    command -v debootstrap >/dev/null || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    }
    echo "fresh-debian: debootstrap bookworm (minbase) into $base"
    rm -rf "$base.tmp"
    mkdir -p "$cache"
    debootstrap --variant=minbase bookworm "$base.tmp" http://deb.debian.org/debian >/dev/null
    mv "$base.tmp" "$base"
fi

rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_home=${CARGO_HOME:-$HOME/.cargo}
[[ -x $cargo_home/bin/cargo && -d $rustup_home/toolchains ]] || {
    echo "fresh-debian: no rustup installation at $cargo_home and $rustup_home" >&2
    exit 1
}

work=$(mktemp -d /tmp/picolet-fresh.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{upper,work,root,tmp}
chmod 1777 "$work/tmp"
# The checkout as committed (plus uncommitted changes), as a clone would have it.
mkdir -p "$work/upper/root/picolet"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$work/upper/root/picolet"
# A login shell of root: PATH as Debian's /etc/profile sets it, plus what
# rustup's installer adds to ~/.profile.
cp "$base/root/.profile" "$work/upper/root/.profile"
echo '. "$HOME/.cargo/env" 2>/dev/null || PATH=$HOME/.cargo/bin:$PATH' >>"$work/upper/root/.profile"
# The machine's network settings: its resolver, and the CAs its admin added
# (an intercepting proxy's), which ca-certificates picks up when installed.
mkdir -p "$work/upper/etc" "$work/upper/usr/local/share/ca-certificates"
cp /etc/resolv.conf "$work/upper/etc/resolv.conf"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$work/upper/usr/local/share/ca-certificates/"
fi

echo "fresh-debian: running ${cmd[*]} in a fresh bookworm root shell"
# Every mount below is made in a mount namespace of its own with private
# propagation: none reaches the host's, and all go when it ends. /sys and /dev
# come whole (cgroup mounts included, which runc needs); /tmp is on the host's
# filesystem, as on a real machine (overlayfs takes no upper dir on the
# overlay the chroot is); Rust is the host's toolchain, read-only where rustup
# puts it; cargo's registry cache stays in the overlay.
export WORK=$work RUSTUP_DIR=$rustup_home CARGO_BIN=$cargo_home/bin BASE=$base
unshare --mount --propagation private bash -euo pipefail -c '
    root=$WORK/root
    mount -t overlay overlay -o "lowerdir=$BASE,upperdir=$WORK/upper,workdir=$WORK/work" "$root"
    mount -t proc proc "$root/proc"
    mount --rbind /sys "$root/sys"
    mount --rbind /dev "$root/dev"
    mount --bind "$WORK/tmp" "$root/tmp"
    mkdir -p "$root/root/.rustup" "$root/root/.cargo/bin"
    mount --bind -o ro "$RUSTUP_DIR" "$root/root/.rustup"
    mount --bind -o ro "$CARGO_BIN" "$root/root/.cargo/bin"
    exec chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb /bin/bash -lc "cd /root/picolet && $*"
' fresh-debian "${cmd[@]}"
