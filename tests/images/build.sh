#!/usr/bin/env bash
# Builds the test images from the host's busybox-static, without a registry:
#   OUTDIR/busybox.tar         OCI archive, docker.io/library/busybox:latest (gzip layer)
#   OUTDIR/busybox-docker.tar  docker-archive, docker.io/library/busybox:docker (plain tar layer)
#   OUTDIR/layered.tar         OCI archive, docker.io/library/layered:v1 (StopSignal SIGUSR1) whose top layer
#                              deletes /data/gone (whiteout) and makes /opq opaque
# Needs: umoci, skopeo, /bin/busybox (static), root (ownership in layers).
# BUSYBOX=<static busybox> IMAGE_ARCH=arm64 build another architecture's images (the aarch64 VM).
# Idempotent: does nothing when all outputs are newer than this script.
set -euo pipefail

out=${1:?usage: build.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
self=$(readlink -f "${BASH_SOURCE[0]}")
outputs=("$out/busybox.tar" "$out/busybox-docker.tar" "$out/layered.tar")

fresh=1
for f in "${outputs[@]}"; do
    [[ -f $f && $f -nt $self ]] || fresh=0
done
((fresh)) && exit 0

busybox=${BUSYBOX:-/bin/busybox}
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
layout=$work/layout

umoci init --layout "$layout"
umoci new --image "$layout:latest"
umoci unpack --image "$layout:latest" "$work/bundle"
root=$work/bundle/rootfs

mkdir -p "$root"/{bin,etc,root,home/app,var/www,proc,sys,dev}
install -m 0755 "$busybox" "$root/bin/busybox"
# Another architecture's busybox cannot run here: Debian's busybox-static of the host has the
# same applets, so its list serves.
applets=$("$busybox" --list 2>/dev/null || /bin/busybox --list)
[ -n "$applets" ] || { echo "no busybox applet list" >&2; exit 1; }
for applet in $applets; do
    [[ $applet == busybox ]] || ln -sf busybox "$root/bin/$applet"
done
cat >"$root/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat >"$root/etc/group" <<'G'
root:x:0:
app:x:1000:
nogroup:x:65534:
G
echo "hello from busybox" >"$root/var/www/index.html"
chown 1000:1000 "$root/home/app"
install -d -m 1777 "$root/tmp"

umoci repack --image "$layout:latest" "$work/bundle"
umoci config --image "$layout:latest" \
    --config.cmd sh \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --architecture "${IMAGE_ARCH:-$(uname -m | sed 's/x86_64/amd64/;s/aarch64/arm64/;s/armv.*/arm/')}" \
    --os linux

# layered:v1 = busybox + a layer adding files + a hand-made layer with a
# whiteout and an opaque-dir marker (umoci's diff would not emit the opaque one).
umoci unpack --image "$layout:latest" "$work/bundle2"
root2=$work/bundle2/rootfs
mkdir -p "$root2/data" "$root2/opq"
echo keep >"$root2/data/keep"
echo gone >"$root2/data/gone"
echo lower >"$root2/opq/lower"
umoci repack --image "$layout:layered" "$work/bundle2"
top=$work/top
mkdir -p "$top/data" "$top/opq"
: >"$top/data/.wh.gone"
: >"$top/opq/.wh..wh..opq"
echo upper >"$top/opq/upper"
tar -C "$top" --owner=0 --group=0 --numeric-owner -cf "$work/top.tar" data opq
umoci raw add-layer --image "$layout:layered" "$work/top.tar"
# A stop signal other than SIGTERM, for the termination test.
umoci config --image "$layout:layered" --config.stopsignal SIGUSR1

skopeo=(skopeo --insecure-policy copy -q)
rm -f "${outputs[@]}"
"${skopeo[@]}" "oci:$layout:latest" "oci-archive:$work/busybox.tar:docker.io/library/busybox:latest"
"${skopeo[@]}" "oci:$layout:latest" "docker-archive:$work/busybox-docker.tar:docker.io/library/busybox:docker"
"${skopeo[@]}" "oci:$layout:layered" "oci-archive:$work/layered.tar:docker.io/library/layered:v1"
mv "$work/busybox.tar" "$work/busybox-docker.tar" "$work/layered.tar" "$out/"
